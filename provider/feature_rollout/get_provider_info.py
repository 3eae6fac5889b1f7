"""Provider metadata for Airflow's provider manager (entry point ``apache_airflow_provider``).

Airflow requires ``package-name`` to equal the distribution name. The hooks, operators, sensors,
triggers and the connection type are registered here as they are added (DESIGN §12).
"""

from __future__ import annotations

from typing import Any

from feature_rollout import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-feature-rollout",
        "name": "Feature Rollout",
        "description": "Safe, observable rollouts of versioned feature-store definitions: plan, stage, "
        "materialize, gate on parity and promote.",
        "versions": [__version__],
        "integrations": [{"integration-name": "Feature Rollout", "tags": ["software"]}],
    }
