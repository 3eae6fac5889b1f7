"""``feature_store.yaml``: Feast's format where it overlaps (``project``, ``registry``, ``online_store``,
``offline_store``). String values may use ``${ENV_VAR}``. Relative paths are relative to the repo.

Defaults (DESIGN §15): registry ``sqlite:///data/registry.db``, online SQLite ``data/online.db``,
offline ``file``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from feature_rollout.core.errors import RepoConfigError
from feature_rollout.core.refs import validate_name

CONFIG_FILE = "feature_store.yaml"
DEFAULT_REGISTRY = "data/registry.db"
DEFAULT_ONLINE_PATH = "data/online.db"
ONLINE_STORE_TYPES = ("sqlite", "postgres", "redis")
POOL_SETTINGS = ("pool_size", "max_overflow", "pool_recycle", "pool_timeout")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class OnlineStoreConfig:
    """Where online features live. ``url`` is a SQLAlchemy/psycopg URL (postgres), a ``redis://`` URL,
    or, for SQLite, a file path."""

    type: str = "sqlite"
    url: str = DEFAULT_ONLINE_PATH
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RepoConfig:
    project: str
    repo_path: Path
    registry_url: str = DEFAULT_REGISTRY
    online_store: OnlineStoreConfig = field(default_factory=OnlineStoreConfig)
    offline_store: str = "file"
    #: Connection-pool settings of the registry engine (PostgreSQL): ``pool_size``, ``max_overflow``,
    #: ``pool_recycle``, ``pool_timeout``. Set from the Airflow connection's extras.
    registry_pool: Mapping[str, int] = field(default_factory=dict)

    def with_overrides(self, *, registry_url: str | None = None, online_store_url: str | None = None,
                       project: str | None = None, registry_pool: Mapping[str, int] | None = None) -> RepoConfig:
        """A copy with the registry, the online store or the project replaced (used by the Airflow hook)."""
        config = self
        if registry_pool:
            unknown = sorted(set(registry_pool) - set(POOL_SETTINGS))
            if unknown:
                raise RepoConfigError(f"Unknown registry pool setting(s) {', '.join(unknown)}; use "
                                      f"{', '.join(POOL_SETTINGS)}.")
            config = replace(config, registry_pool=dict(registry_pool))
        if registry_url:
            config = replace(config, registry_url=_registry_url(registry_url, config.repo_path))
        if online_store_url:
            config = replace(config, online_store=_online_from_url(online_store_url, config.repo_path))
        if project:
            config = replace(config, project=validate_name(project, "workspace"))
        return config


def load_config(repo_path: str | os.PathLike[str], config: RepoConfig | Mapping[str, Any] | None = None) -> RepoConfig:
    """Read ``feature_store.yaml`` from ``repo_path`` (or use ``config``) and resolve paths and ``${ENV}``."""
    root = Path(repo_path).expanduser().resolve()
    if isinstance(config, RepoConfig):
        return config
    if config is None:
        file = root / CONFIG_FILE
        if not file.is_file():
            raise RepoConfigError(
                f"No {CONFIG_FILE} in {root}. Run `feature-rollout init {root}` to create a repo, or pass "
                "repo_path= (--repo) pointing at one."
            )
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise RepoConfigError(f"{file} is not valid YAML: {err}") from None
        where = str(file)
    else:
        raw, where = dict(config), "config"
    if not isinstance(raw, Mapping):
        raise RepoConfigError(f"{where} must be a mapping with at least 'project: <name>'.")
    data = _expand(raw, where)
    project = data.get("project")
    if not project:
        raise RepoConfigError(f"{where} needs 'project: <name>' (the default workspace).")
    validate_name(project, "project (workspace)")
    return RepoConfig(
        project=project,
        repo_path=root,
        registry_url=_registry_url(_registry_value(data.get("registry"), where), root),
        online_store=_online_store(data.get("online_store"), root, where),
        offline_store=_offline_store(data.get("offline_store"), where),
    )


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise RepoConfigError(f"{where} uses ${{{name}}}, but the environment variable {name} is not set.")
            return os.environ[name]
        return _ENV.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: _expand(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    return value


def _registry_value(value: Any, where: str) -> str:
    if value is None:
        return DEFAULT_REGISTRY
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("path"), str):
        return str(value["path"])
    raise RepoConfigError(f"'registry' in {where} must be a path or URL, or a mapping with 'path'.")


def _registry_url(value: str, root: Path) -> str:
    if "://" in value:
        if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
            relative = value[len("sqlite:///"):]
            if relative and relative != ":memory:":
                return f"sqlite:///{(root / relative).resolve()}"
        return value
    return f"sqlite:///{(root / value).resolve()}"


def _online_store(value: Any, root: Path, where: str) -> OnlineStoreConfig:
    if value is None:
        return OnlineStoreConfig(url=str((root / DEFAULT_ONLINE_PATH).resolve()))
    if isinstance(value, str):
        return _online_from_url(value, root)
    if not isinstance(value, Mapping):
        raise RepoConfigError(f"'online_store' in {where} must be a mapping with 'type'.")
    kind = value.get("type", "sqlite")
    if kind not in ONLINE_STORE_TYPES:
        raise RepoConfigError(
            f"online_store type {kind!r} in {where} is not supported; use one of {', '.join(ONLINE_STORE_TYPES)}."
        )
    options = {k: v for k, v in value.items() if k not in ("type", "path", "url", "connection_string")}
    if kind == "sqlite":
        path = value.get("path", DEFAULT_ONLINE_PATH)
        return OnlineStoreConfig("sqlite", str((root / path).resolve()), options)
    url = value.get("url") or value.get("connection_string") or value.get("path")
    if not url:
        raise RepoConfigError(f"online_store of type {kind} in {where} needs 'url'.")
    if kind == "redis" and "://" not in str(url):
        url = f"redis://{url}"  # Feast's "host:port" form
    return OnlineStoreConfig(kind, str(url), options)


def _online_from_url(url: str, root: Path) -> OnlineStoreConfig:
    if url.startswith(("redis://", "rediss://", "unix://")):
        return OnlineStoreConfig("redis", url)
    if url.startswith(("postgresql", "postgres://")):
        return OnlineStoreConfig("postgres", url)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///"):]
    return OnlineStoreConfig("sqlite", str((root / url).resolve()))


def _offline_store(value: Any, where: str) -> str:
    kind = value if isinstance(value, str) else (value or {}).get("type", "file") if isinstance(value, Mapping | None) \
        else None
    if kind not in ("file", "duckdb"):
        raise RepoConfigError(f"offline_store in {where} must be 'file' (Parquet read with DuckDB).")
    return "file"
