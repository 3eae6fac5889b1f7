"""From what a caller asks for (``"driver_stats@v2:conv_rate"``, a ``FeatureService``) to what each
store reads: one group per (view, version), with the output column name of every feature.

Output names: the feature name; with ``full_feature_names=True``, ``{view}__{feature}`` for a ref
to the active version and ``{view}@v{N}__{feature}`` for a ref that names a version. Two features
with one output name are an error that says to use full names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from feature_rollout.core.definitions import FeatureService
from feature_rollout.core.errors import (
    FeatureViewNotFound,
    FeatureViewVersionNotFound,
    InvalidReferenceError,
    UnknownReferenceError,
    VersionPrunedError,
)
from feature_rollout.core.refs import parse_feature_ref
from feature_rollout.core.state import VersionRecord, ViewRecord, WorkspaceState


@dataclass(frozen=True)
class FeatureGroup:
    """Features of one version of one view, and what to call them in the result."""

    view: ViewRecord
    version: VersionRecord
    features: tuple[tuple[str, str], ...]
    explicit_version: bool

    @property
    def ttl_seconds(self) -> float | None:
        # ttl is in-place metadata of the view: it applies to every version read
        value = self.view.metadata.get("ttl_seconds", self.version.spec.get("ttl_seconds"))
        return float(value) if value else None

    @property
    def join_keys(self) -> list[str]:
        return [k["name"] for k in self.version.spec["join_keys"]]


Projection = tuple[str, int | None, list[str] | None]


def _projections(features: Sequence[str] | FeatureService, state: WorkspaceState) -> list[Projection]:
    if isinstance(features, FeatureService):
        registered = state.feature_services.get(features.name)
        service = FeatureService.from_spec(registered.spec) if registered else features
        return [(p.view_name, p.version, p.features) for p in service.projections]
    if isinstance(features, str) or not isinstance(features, Iterable):
        raise InvalidReferenceError(
            "features must be a list of references such as ['driver_stats:conv_rate'] or a FeatureService."
        )
    projections: list[Projection] = []
    for text in features:
        ref = parse_feature_ref(text)
        projections.append((ref.view, ref.version, [ref.feature]))
    return projections


def resolve(features: Sequence[str] | FeatureService, state: WorkspaceState, *,
            full_feature_names: bool) -> list[FeatureGroup]:
    """Group the requested features by (view, version), in request order, with output names."""
    groups: dict[tuple[str, int], tuple[ViewRecord, VersionRecord, list[tuple[str, str]], bool]] = {}
    outputs: dict[str, str] = {}
    views = state.live_views()
    for view_name, version, names in _projections(features, state):
        record = views.get(view_name)
        if record is None:
            raise FeatureViewNotFound(view_name, state.name)
        number = record.active_version if version is None else version
        target = record.version(number) if number is not None else None
        if target is None:
            existing = [v.number for v in record.versions]
            if number is None:
                raise FeatureViewVersionNotFound(
                    view_name, record.highest_version, existing,
                    hint=f"'{view_name}' has no active version yet; read a staged one as '{view_name}@vN:feature'.")
            raise FeatureViewVersionNotFound(view_name, number, existing)
        available = [f["name"] for f in target.spec["features"]]
        for feature in names if names is not None else available:
            if feature not in available:
                raise UnknownReferenceError(
                    f"v{target.number} of feature view '{view_name}' has no feature '{feature}'; it has "
                    f"{', '.join(available)}."
                )
            explicit = version is not None
            label = f"{view_name}@v{target.number}" if explicit else view_name
            output = f"{label}__{feature}" if full_feature_names else feature
            ref = f"{label}:{feature}"
            if output in outputs and outputs[output] != ref:
                raise InvalidReferenceError(
                    f"'{outputs[output]}' and '{ref}' would both be returned as '{output}'; pass "
                    "full_feature_names=True to tell them apart."
                )
            outputs[output] = ref
            key = (view_name, target.number)
            entry = groups.setdefault(key, (record, target, [], explicit))
            if (feature, output) not in entry[2]:
                entry[2].append((feature, output))
    return [FeatureGroup(r, v, tuple(f), e) for r, v, f, e in groups.values()]


def require_table(group: FeatureGroup) -> None:
    if group.version.table_dropped:
        raise VersionPrunedError(
            f"The online table of {group.view.name} v{group.version.number} was dropped by prune; read it offline "
            "(get_historical_features) or materialize a version that still has its table."
        )


class OnlineResponse:
    """The result of ``get_online_features``: join keys and features, one row per entity row."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def to_arrow(self) -> pa.Table:
        return self._table

    def to_dict(self) -> dict[str, list[Any]]:
        data: dict[str, list[Any]] = self._table.to_pydict()
        return data

    def to_df(self) -> Any:
        return self._table.to_pandas()


class RetrievalJob:
    """The result of ``get_historical_features``: the spine's columns and the features, in spine order."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def to_arrow(self) -> pa.Table:
        return self._table

    def to_df(self) -> Any:
        return self._table.to_pandas()
