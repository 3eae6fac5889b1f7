"""Airflow fixtures: a migrated metadata DB (once per session), and a demo repo behind the connection
``feature_rollout_default`` (given to tasks through ``AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEMO_END


@pytest.fixture(scope="session")
def airflow_db() -> None:
    from airflow.utils import db

    db.resetdb()


def connection_json(repo: Path, **extra: Any) -> str:
    return json.dumps({"conn_type": "feature_rollout", "extra": {"repo_path": str(repo), **extra}})


@pytest.fixture
def rollout_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A demo repo (20 drivers, 3 days to DEMO_END) that the default connection points at."""
    from feature_rollout.scaffold import init_repo

    repo = init_repo(tmp_path / "repo", project="demo", drivers=20, days=3, end=DEMO_END)
    monkeypatch.setenv("AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT", connection_json(repo))
    yield repo
    from feature_rollout.registry.engine import dispose_engines

    dispose_engines()


def store_of(repo: Path) -> Any:
    from feature_rollout.store import FeatureStore

    return FeatureStore(repo)


def hours_before_end(hours: int) -> str:
    from datetime import timedelta

    return (DEMO_END - timedelta(hours=hours)).isoformat()


os.environ.setdefault("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
