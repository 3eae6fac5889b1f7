"""What the registry holds for one workspace, as plain values: the input of :func:`~feature_rollout.core.plan.plan`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from feature_rollout.core.fingerprint import Fingerprint


class VersionState(StrEnum):
    """The life of a version: ``staged`` (exists, not served), ``active`` (served), ``retired`` (served once)."""

    STAGED = "staged"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True)
class ObjectRecord:
    """An entity, data source or feature service as registered (current definition only)."""

    name: str
    spec: Mapping[str, Any]
    fingerprint: Fingerprint


@dataclass(frozen=True)
class VersionRecord:
    """One snapshot of a feature view. ``spec`` is the resolved view spec at the time it was created."""

    number: int
    schema_hash: str
    served_hash: str
    state: VersionState
    spec: Mapping[str, Any]
    online_table: str
    #: ``prune`` dropped this version's online table.
    table_dropped: bool = False


@dataclass(frozen=True)
class Hold:
    """Placed by rollbacks: ``versions`` must not be re-promoted by an apply until the hold is released."""

    versions: tuple[int, ...]
    reason: str | None = None
    at: str | None = None
    actor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"versions": list(self.versions), "reason": self.reason, "at": self.at, "actor": self.actor}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Hold | None:
        if not data:
            return None
        return cls(versions=tuple(data.get("versions", ())), reason=data.get("reason"), at=data.get("at"),
                   actor=data.get("actor"))


@dataclass(frozen=True)
class ViewRecord:
    name: str
    active_version: int | None
    metadata: Mapping[str, Any]
    metadata_hash: str
    hold: Hold | None
    deleted: bool
    versions: tuple[VersionRecord, ...]
    #: The schema hash of the definition that asked for the current pin (``version="vK"``), so that
    #: re-applying that same definition is a no-op rather than a conflict.
    pinned_schema_hash: str | None = None

    @property
    def highest_version(self) -> int:
        return max((v.number for v in self.versions), default=-1)

    def version(self, number: int) -> VersionRecord | None:
        for v in self.versions:
            if v.number == number:
                return v
        return None

    @property
    def active(self) -> VersionRecord | None:
        return None if self.active_version is None else self.version(self.active_version)


@dataclass(frozen=True)
class WorkspaceState:
    name: str
    live: bool = True
    revision: int = 0
    exists: bool = False
    entities: Mapping[str, ObjectRecord] = field(default_factory=dict)
    data_sources: Mapping[str, ObjectRecord] = field(default_factory=dict)
    feature_services: Mapping[str, ObjectRecord] = field(default_factory=dict)
    feature_views: Mapping[str, ViewRecord] = field(default_factory=dict)

    def live_views(self) -> dict[str, ViewRecord]:
        """Views that are not deleted (a deleted view keeps its history but is not current)."""
        return {n: v for n, v in self.feature_views.items() if not v.deleted}
