"""The offline store: Parquet sources read with pyarrow datasets, point-in-time joins in DuckDB (DESIGN §9).

- :mod:`~feature_rollout.offline.sources`: locating a source, checking it against a view, reading it.
- :mod:`~feature_rollout.offline.retrieval`: historical retrieval and the reads of materialization,
  readiness and parity.
- :mod:`~feature_rollout.offline.spine`: normalizing and fingerprinting spines.

The names below are re-exported lazily: importing this package imports neither pyarrow nor DuckDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "open_dataset": "feature_rollout.offline.sources",
    "check_columns": "feature_rollout.offline.sources",
    "FeatureRead": "feature_rollout.offline.retrieval",
    "historical_features": "feature_rollout.offline.retrieval",
    "latest_rows": "feature_rollout.offline.retrieval",
    "count_rows": "feature_rollout.offline.retrieval",
    "entity_keys": "feature_rollout.offline.retrieval",
    "min_event_time": "feature_rollout.offline.retrieval",
    "max_event_time": "feature_rollout.offline.retrieval",
    "sample_spine": "feature_rollout.offline.retrieval",
    "normalize_spine": "feature_rollout.offline.spine",
    "spine_digest": "feature_rollout.offline.spine",
}

__all__ = [
    "FeatureRead",
    "check_columns",
    "count_rows",
    "entity_keys",
    "historical_features",
    "latest_rows",
    "max_event_time",
    "min_event_time",
    "normalize_spine",
    "open_dataset",
    "sample_spine",
    "spine_digest",
]

if TYPE_CHECKING:
    from feature_rollout.offline.retrieval import (
        FeatureRead,
        count_rows,
        entity_keys,
        historical_features,
        latest_rows,
        max_event_time,
        min_event_time,
        sample_spine,
    )
    from feature_rollout.offline.sources import check_columns, open_dataset
    from feature_rollout.offline.spine import normalize_spine, spine_digest


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'feature_rollout.offline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
