"""A registry with real history (see ``history.py``), once per module and registry backend, and a
TestClient on the UI app mounted where the Airflow API server mounts it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import DEMO_END, PG_URL, require_postgres
from tests.ui.history import History, build_history


@pytest.fixture(scope="module")
def module_registry_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh registry per module: SQLite, or (``param="postgresql"``) a fresh PostgreSQL schema."""
    from feature_rollout.registry.engine import dispose_engines
    from feature_rollout.registry.migrate import forget_checked

    forget_checked()
    if getattr(request, "param", "sqlite") == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('registry') / 'registry.db'}"
        dispose_engines()
        return
    require_postgres()
    schema = f"ui_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}) \
            .render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def history_at(base: Path, registry_url: str, **options: Any) -> History:
    from feature_rollout.scaffold import init_repo
    from feature_rollout.store import FeatureStore

    repo = init_repo(base / "repo", project="demo", drivers=20, days=3, end=DEMO_END)
    store = FeatureStore(repo, config={"project": "demo", "registry": registry_url,
                                       "online_store": {"type": "sqlite", "path": str(base / "online.db")}})
    return build_history(store, repo, **options)


@pytest.fixture(scope="module")
def history(module_registry_url: str, tmp_path_factory: pytest.TempPathFactory) -> History:
    return history_at(tmp_path_factory.mktemp("history"), module_registry_url)


def client_for(registry: Any) -> Any:
    from fastapi.testclient import TestClient

    from feature_rollout.ui.app import URL_PREFIX, create_app

    return TestClient(create_app(lambda: registry), root_path=URL_PREFIX)


@pytest.fixture(scope="module")
def client(history: History) -> Any:
    return client_for(history.store.registry)
