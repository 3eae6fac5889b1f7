"""Registry schema migrations (Alembic), run by ``feature-rollout registry upgrade`` and on first use.

Migrations run inside one transaction that first takes a lock (SQLite's write lock, or a
PostgreSQL advisory lock), so that two processes opening a new registry at once migrate it once.
Alembic's version table is ``feature_rollout_alembic_version``, so the registry may share a
database with Airflow's metadata (which has its own ``alembic_version``).

Alembic is imported only when a migration runs: the check on every first use is one plain query
against :data:`HEAD_REVISION` (a test keeps that constant equal to Alembic's head).
"""

from __future__ import annotations

import threading
from importlib.resources import files
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from feature_rollout.core.errors import RepoConfigError
from feature_rollout.registry.engine import is_postgres, safe_url, transaction

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "feature_rollout_alembic_version"
HEAD_REVISION = "0005"
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004", "0005")
# pg_advisory_xact_lock key: a fixed number unique to this package (ASCII "frollout").
_ADVISORY_LOCK_KEY = 0x66726F6C6C6F7574
_CHECKED: set[str] = set()
_CHECKED_LOCK = threading.Lock()


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("feature_rollout.registry") / "migrations"))
    return config


def current_revision(conn: Connection) -> str | None:
    """The registry's schema revision, or ``None`` for an empty database."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the registry to ``revision``; returns (revision before, revision after)."""
    from alembic import command

    with transaction(engine, write=True) as conn:
        if is_postgres(conn):
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
        before = current_revision(conn)
        _check_known(before, engine)
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        after = current_revision(conn)
    return before, after


def ensure_current(engine: Engine) -> None:
    """Migrate the registry to head unless this process already saw it there (one query per engine)."""
    key = engine.url.render_as_string(hide_password=False)
    if key in _CHECKED:
        return
    with transaction(engine, write=False) as conn:
        current = current_revision(conn)
    if current != HEAD_REVISION:
        _check_known(current, engine)
        upgrade(engine)
    with _CHECKED_LOCK:
        _CHECKED.add(key)


def _check_known(revision: str | None, engine: Engine) -> None:
    if revision is not None and revision not in KNOWN_REVISIONS:
        raise RepoConfigError(
            f"The registry at {safe_url(engine.url)} has schema revision {revision!r}, which this version of "
            "feature-rollout does not know: it was migrated by a newer release. Upgrade "
            "airflow-provider-feature-rollout."
        )


def forget_checked() -> None:
    """Tests: make the next :func:`ensure_current` look at the database again."""
    with _CHECKED_LOCK:
        _CHECKED.clear()
