"""Provider metadata for Airflow's provider manager (entry point ``apache_airflow_provider``).

Airflow requires ``package-name`` to equal the distribution name. The connection form is declared
here (``ui-field-behaviour`` and ``conn-fields``, the Airflow >= 3.2 way); this module imports
nothing heavy, as Airflow reads it during provider discovery.
"""

from __future__ import annotations

from typing import Any

from feature_rollout import __version__

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": [],
    "relabeling": {"host": "Registry host (PostgreSQL)", "schema": "Registry database", "login": "Registry user",
                   "password": "Registry password"},
    "placeholders": {"host": "postgres.internal", "port": "5432", "schema": "features", "login": "feature_rollout",
                     "extra": '{"repo_path": "/opt/airflow/feature_repo"}'},
}

_STRING = {"type": ["string", "null"]}
_INTEGER = {"type": ["integer", "null"]}
CONN_FIELDS: dict[str, Any] = {
    "repo_path": {"label": "Feature repo path", "description": "Folder with feature_store.yaml, as the workers see it",
                  "schema": _STRING},
    "workspace": {"label": "Workspace", "description": "Default workspace (else the repo's project)",
                  "schema": _STRING},
    "registry_url": {"label": "Registry URL", "description": "SQLAlchemy URL; overrides host/port/login/schema",
                     "schema": _STRING},
    "online_store_url": {"label": "Online store URL", "description": "postgresql://..., redis://... or a SQLite path",
                         "schema": _STRING},
    "pool_size": {"label": "Registry pool size", "schema": _INTEGER},
    "max_overflow": {"label": "Registry pool overflow", "schema": _INTEGER},
    "pool_recycle": {"label": "Registry pool recycle (s)", "schema": _INTEGER},
    "pool_timeout": {"label": "Registry pool timeout (s)", "schema": _INTEGER},
}


def get_provider_info() -> dict[str, Any]:
    integration = "Feature Rollout"
    return {
        "package-name": "airflow-provider-feature-rollout",
        "name": "Feature Rollout",
        "description": "Safe, observable rollouts of versioned feature-store definitions: plan, stage, "
        "materialize, gate on parity and promote.",
        "versions": [__version__],
        "integrations": [{"integration-name": integration, "tags": ["software"]}],
        "hooks": [{"integration-name": integration, "python-modules": ["feature_rollout.hooks.feature_registry"]}],
        "operators": [{"integration-name": integration,
                       "python-modules": ["feature_rollout.operators.feature_rollout"]}],
        "sensors": [{"integration-name": integration, "python-modules": ["feature_rollout.sensors.feature_rollout"]}],
        "triggers": [{"integration-name": integration, "python-modules": ["feature_rollout.triggers.feature_rollout"]}],
        "connection-types": [
            {
                "connection-type": "feature_rollout",
                "hook-class-name": "feature_rollout.hooks.feature_registry.FeatureRegistryHook",
                "hook-name": "Feature Rollout",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
                "conn-fields": CONN_FIELDS,
            }
        ],
        "extra-links": ["feature_rollout.operators.feature_rollout.FeatureViewLink"],
    }
