"""Online stores (DESIGN §9): SQLite (embedded default), PostgreSQL and Redis behind one protocol.

:func:`open_online_store` picks the store of a ``feature_store.yaml`` ``online_store`` section. The
store modules are imported only there, so that importing this package (for example while Airflow
parses DAGs) imports neither psycopg nor redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feature_rollout.config import ONLINE_STORE_TYPES, OnlineStoreConfig
from feature_rollout.core.errors import RepoConfigError
from feature_rollout.online.base import Column, OnlineStore, OnlineTable

__all__ = ["Column", "OnlineStore", "OnlineTable", "open_online_store"]

#: ``online_store`` options each store reads, by name (anything else is a mistake worth reporting)
STORE_OPTIONS: dict[str, tuple[str, ...]] = {
    "sqlite": (),
    "postgres": ("connect_timeout",),
    "redis": ("key_prefix", "connect_timeout"),
}


def open_online_store(config: OnlineStoreConfig) -> OnlineStore:
    """The online store ``config`` describes. No I/O happens here: an unreachable server or an
    unopenable file is reported (:class:`~feature_rollout.core.errors.OnlineStoreUnavailableError`) by
    the store's first operation.

    :param config: ``type`` (``sqlite``, ``postgres`` or ``redis``), ``url`` (a file path for SQLite,
        ``postgresql://`` or ``postgresql+psycopg://``, ``redis://``) and ``options``.
    :raises RepoConfigError: an unknown type or option, or an option of the wrong type.
    """
    if config.type not in STORE_OPTIONS:
        raise RepoConfigError(
            f"online_store type {config.type!r} is not supported; use one of {', '.join(ONLINE_STORE_TYPES)}."
        )
    options = _options(config.type, config.options)
    if config.type == "sqlite":
        from feature_rollout.online.sqlite import SqliteOnlineStore

        path = config.url[len("sqlite:///"):] if config.url.startswith("sqlite:///") else config.url
        return SqliteOnlineStore(path)
    try:
        if config.type == "postgres":
            from feature_rollout.online.postgres import DEFAULT_CONNECT_TIMEOUT_SECONDS, PostgresOnlineStore

            # libpq takes whole seconds
            timeout = max(1, round(_seconds(options, "connect_timeout", DEFAULT_CONNECT_TIMEOUT_SECONDS)))
            return PostgresOnlineStore(config.url, connect_timeout=timeout)
        from feature_rollout.online.redis import DEFAULT_CONNECT_TIMEOUT_SECONDS as REDIS_TIMEOUT
        from feature_rollout.online.redis import DEFAULT_KEY_PREFIX, RedisOnlineStore

        return RedisOnlineStore(config.url, key_prefix=str(options.get("key_prefix", DEFAULT_KEY_PREFIX)),
                                connect_timeout=_seconds(options, "connect_timeout", REDIS_TIMEOUT))
    except ModuleNotFoundError as err:
        extra = "postgres" if config.type == "postgres" else "redis"
        raise RepoConfigError(
            f"The {config.type} online store needs the Python package {err.name!r}; install the {extra} extra "
            f"(pip install 'airflow-provider-feature-rollout[{extra}]')."
        ) from None


def _options(kind: str, options: Mapping[str, Any]) -> Mapping[str, Any]:
    unknown = sorted(set(options) - set(STORE_OPTIONS[kind]))
    if unknown:
        allowed = ", ".join(STORE_OPTIONS[kind]) or "none"
        raise RepoConfigError(
            f"online_store option(s) {', '.join(unknown)} are not understood by the {kind} store (it takes: "
            f"{allowed}); remove them from feature_store.yaml."
        )
    return options


def _seconds(options: Mapping[str, Any], name: str, default: float) -> float:
    value = options.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RepoConfigError(f"online_store option {name} must be a number of seconds, not {value!r}.") from None
    if number <= 0:
        raise RepoConfigError(f"online_store option {name} must be positive, not {value!r}.")
    return number
