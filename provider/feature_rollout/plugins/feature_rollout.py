"""The Airflow UI plugin (DESIGN §13), registered through the ``airflow.plugins`` entry point.

It mounts :func:`feature_rollout.ui.app.create_app` at ``/feature-rollout`` in the API server, adds a
"Feature rollout" entry to the Browse menu (the page embedded in the Airflow UI) and a "Feature
rollout" tab on every DAG (what that DAG's runs did to the registry). Every route requires an
authenticated Airflow user: Airflow's own ``requires_authenticated()`` dependency, which accepts the
UI's ``_token`` cookie (so the embedded page just works) or an ``Authorization: Bearer`` JWT.

The registry comes from the Airflow connection ``[feature_rollout] ui_conn_id`` (default
``feature_rollout_default``): its registry URL, or the registry of its ``repo_path``. It is looked up
on the first request, not at import, and again after :data:`SETTINGS_TTL_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from feature_rollout.core.errors import RepoConfigError
from feature_rollout.hooks.feature_registry import DEFAULT_CONN_ID, StoreSettings
from feature_rollout.registry.registry import Registry
from feature_rollout.ui.app import URL_PREFIX, create_app

SETTINGS_TTL_SECONDS = 30.0


class _RegistryFromConnection:
    """Resolves the UI's registry from an Airflow connection, cached for a short while so that an
    edited connection takes effect without restarting the API server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: tuple[float, Registry] | None = None

    def __call__(self) -> Registry:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < SETTINGS_TTL_SECONDS:
                return self._cached[1]
            registry = self._resolve()
            self._cached = (time.monotonic(), registry)
            return registry

    @staticmethod
    def _resolve() -> Registry:
        from airflow.configuration import conf
        from airflow.exceptions import AirflowNotFoundException  # type: ignore[attr-defined]
        from airflow.models.connection import Connection

        conn_id = conf.get("feature_rollout", "ui_conn_id", fallback=DEFAULT_CONN_ID)
        try:
            connection = Connection.get_connection_from_secrets(conn_id)
        except AirflowNotFoundException:
            raise RepoConfigError(
                f"The Airflow connection '{conn_id}' does not exist. Create it (type feature_rollout, with the "
                "registry's host/login/password/schema or a 'registry_url' extra, or a 'repo_path' extra), or point "
                "[feature_rollout] ui_conn_id at another connection."
            ) from None
        return StoreSettings.from_connection(connection, require_repo=False).registry()


def _authenticated() -> list[Any]:
    from airflow.api_fastapi.core_api.security import requires_authenticated
    from fastapi import Depends

    return [Depends(requires_authenticated())]


app = create_app(_RegistryFromConnection(), dependencies=_authenticated())


class FeatureRolloutPlugin(AirflowPlugin):
    """The feature-rollout pages inside the Airflow UI."""

    name = "feature_rollout"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Feature rollout"}]
    external_views = [
        {"name": "Feature rollout", "href": f"{URL_PREFIX}/", "url_route": "feature-rollout", "destination": "nav",
         "category": "browse"},
        {"name": "Feature rollout", "href": f"{URL_PREFIX}/dags/{{DAG_ID}}", "url_route": "feature-rollout-dag",
         "destination": "dag"},
    ]
