"""``FeatureRegistryHook``: an Airflow connection to a feature-rollout registry (DESIGN §12).

The connection gives the registry database: host/port/login/password/schema for PostgreSQL, or the
extra ``registry_url`` for any SQLAlchemy URL (a SQLite file, say). Other extras are read by name,
never passed through: ``repo_path`` (the feature repo the workers see), ``workspace``,
``online_store_url``, and the registry pool settings ``pool_size``, ``max_overflow``,
``pool_recycle``, ``pool_timeout``. Anything the connection leaves out comes from the repo's
``feature_store.yaml``. Passwords never reach logs, XCom or exceptions: every URL this module
shows is masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from sqlalchemy.engine import URL

from feature_rollout.config import POOL_SETTINGS, load_config
from feature_rollout.core.errors import FeatureRolloutError, RepoConfigError
from feature_rollout.redaction import masked_url

if TYPE_CHECKING:
    from feature_rollout.registry.registry import Registry
    from feature_rollout.store import FeatureStore

CONN_TYPE = "feature_rollout"
DEFAULT_CONN_ID = "feature_rollout_default"


@dataclass(frozen=True)
class StoreSettings:
    """What a connection says about the store, independent of Airflow (so triggers can use it too)."""

    repo_path: str | None
    workspace: str | None
    registry_url: str | None
    online_store_url: str | None
    registry_pool: Mapping[str, int]

    @classmethod
    def from_connection(cls, conn: Any, *, repo_path: str | None = None, workspace: str | None = None,
                        require_repo: bool = True) -> StoreSettings:
        """Read ``conn`` (an Airflow ``Connection``); ``repo_path``/``workspace`` given here win over its extras.

        :param require_repo: fail when no repo path is known (tasks need the repo; the UI, which only
            reads the registry, does not when the connection names the registry itself).
        """
        extra = conn.extra_dejson or {}
        registry_url = extra.get("registry_url") or None
        if not registry_url and conn.host:
            registry_url = URL.create(
                "postgresql+psycopg", username=conn.login or None, password=conn.password or None, host=conn.host,
                port=conn.port or None, database=conn.schema or None,
            ).render_as_string(hide_password=False)
        path = repo_path or extra.get("repo_path")
        if not path and (require_repo or not registry_url):
            raise RepoConfigError(
                f"Connection '{conn.conn_id}' has no 'repo_path' extra and the task passed no repo_path: say where the "
                "feature repo (the folder with feature_store.yaml) is on the workers."
            )
        pool = {}
        for name in POOL_SETTINGS:
            if extra.get(name) not in (None, ""):
                try:
                    pool[name] = int(extra[name])
                except (TypeError, ValueError):
                    raise RepoConfigError(f"Extra '{name}' of connection '{conn.conn_id}' must be a whole number.") \
                        from None
        return cls(repo_path=str(path) if path else None, workspace=workspace or extra.get("workspace") or None,
                   registry_url=registry_url, online_store_url=extra.get("online_store_url") or None,
                   registry_pool=pool)

    def store(self) -> FeatureStore:
        from feature_rollout.store import FeatureStore

        if self.repo_path is None:
            raise RepoConfigError("No feature repo path: set the connection's 'repo_path' extra.")
        config = load_config(self.repo_path).with_overrides(
            registry_url=self.registry_url, online_store_url=self.online_store_url, registry_pool=self.registry_pool)
        return FeatureStore(self.repo_path, workspace=self.workspace, config=config)

    def registry(self) -> Registry:
        """The registry alone (read-only use: never migrated here), from the connection or the repo's config."""
        from feature_rollout.registry.registry import Registry

        if self.registry_url:
            url, pool = self.registry_url, self.registry_pool
        else:
            config = load_config(self.repo_path or ".").with_overrides(registry_pool=self.registry_pool)
            url, pool = config.registry_url, config.registry_pool
        return Registry(url, auto_upgrade=False, pool=pool)

    def describe(self) -> str:
        registry = masked_url(self.registry_url) if self.registry_url else "from feature_store.yaml"
        return f"repo {self.repo_path}, workspace {self.workspace or '(project)'}, registry {registry}"


class FeatureRegistryHook(BaseHook):
    """Builds a :class:`~feature_rollout.store.FeatureStore` from an Airflow connection.

    :param feature_rollout_conn_id: the connection (type ``feature_rollout``).
    :param repo_path: the feature repo, instead of the connection's ``repo_path`` extra.
    :param workspace: the workspace, instead of the connection's ``workspace`` extra (or the repo's project).
    """

    conn_name_attr = "feature_rollout_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Feature Rollout"

    def __init__(self, feature_rollout_conn_id: str = DEFAULT_CONN_ID, *, repo_path: str | None = None,
                 workspace: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feature_rollout_conn_id = feature_rollout_conn_id
        self.repo_path = repo_path
        self.workspace = workspace
        self._store: FeatureStore | None = None

    def settings(self) -> StoreSettings:
        conn = self.get_connection(self.feature_rollout_conn_id)
        return StoreSettings.from_connection(conn, repo_path=self.repo_path, workspace=self.workspace)

    def get_conn(self) -> FeatureStore:
        """The store (built once per hook)."""
        if self._store is None:
            settings = self.settings()
            self.log.info("Feature store: %s", settings.describe())
            self._store = settings.store()
        return self._store

    def get_store(self) -> FeatureStore:
        return self.get_conn()

    def test_connection(self) -> tuple[bool, str]:
        """Open the registry and list its workspaces."""
        try:
            store = self.get_conn()
            workspaces = store.list_workspaces()
        except FeatureRolloutError as err:
            return False, str(err)
        except Exception as err:
            return False, f"{type(err).__name__}: {err}"
        names = ", ".join(w["name"] for w in workspaces) or "none yet"
        return True, f"Connected to the registry ({len(workspaces)} workspace(s): {names})."

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """For Airflow < 3.2; newer versions read ``ui-field-behaviour`` from the provider info."""
        from feature_rollout.get_provider_info import UI_FIELD_BEHAVIOUR

        return {"hidden_fields": UI_FIELD_BEHAVIOUR["hidden-fields"], "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
                "placeholders": UI_FIELD_BEHAVIOUR["placeholders"]}
