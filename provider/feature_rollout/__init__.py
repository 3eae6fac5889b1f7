"""feature-rollout: safe, observable rollouts of versioned feature-store definitions on Apache Airflow 3.

The definitions API is re-exported lazily, so that ``import feature_rollout`` (for example while
Airflow parses a DAG file) costs nothing and imports neither pandas, SQLAlchemy nor Airflow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Entity": "feature_rollout.core.definitions",
    "Field": "feature_rollout.core.definitions",
    "FileSource": "feature_rollout.core.definitions",
    "FeatureView": "feature_rollout.core.definitions",
    "FeatureService": "feature_rollout.core.definitions",
    "FeatureViewProjection": "feature_rollout.core.definitions",
    "FeatureStore": "feature_rollout.store",
    "RepoConfig": "feature_rollout.config",
    "Plan": "feature_rollout.core.plan",
}

__all__ = [
    "Entity",
    "FeatureService",
    "FeatureStore",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "FileSource",
    "Plan",
    "RepoConfig",
    "__version__",
]

if TYPE_CHECKING:
    from feature_rollout.config import RepoConfig
    from feature_rollout.core.definitions import (
        Entity,
        FeatureService,
        FeatureView,
        FeatureViewProjection,
        Field,
        FileSource,
    )
    from feature_rollout.core.plan import Plan
    from feature_rollout.store import FeatureStore


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'feature_rollout' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
