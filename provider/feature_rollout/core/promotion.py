"""Rules for moving a view's active pointer outside of an apply: ``promote`` and ``rollback`` (§11).

Pure functions over a :class:`WorkspaceState`; the registry calls them inside the transaction that
moves the pointer, so the rules hold against concurrent writers.
"""

from __future__ import annotations

from dataclasses import dataclass

from feature_rollout.core.errors import (
    DependencyConflictError,
    FeatureViewNotFound,
    FeatureViewVersionNotFound,
    NoPreviousVersion,
    PreventDestroyError,
    VersionHeldError,
)
from feature_rollout.core.plan import ObjectType, missing_service_features, protection_chains
from feature_rollout.core.state import ViewRecord, WorkspaceState


@dataclass(frozen=True)
class PointerMove:
    """Move ``name``'s active version from ``from_version`` to ``to_version``."""

    name: str
    from_version: int | None
    to_version: int
    kind: str

    @property
    def is_noop(self) -> bool:
        return self.from_version == self.to_version


def _view(state: WorkspaceState, name: str) -> ViewRecord:
    record = state.live_views().get(name)
    if record is None:
        raise FeatureViewNotFound(name, state.name)
    return record


def check_promote(state: WorkspaceState, name: str, version: int) -> PointerMove:
    """Validate promoting ``name`` to ``version`` and return the move (a no-op if already active)."""
    record = _view(state, name)
    target = record.version(version)
    if target is None:
        raise FeatureViewVersionNotFound(name, version, [v.number for v in record.versions])
    if record.active_version == version:
        return PointerMove(name, version, version, "promote")
    if record.hold is not None and version in record.hold.versions:
        raise VersionHeldError(name, version)
    active = record.active
    if state.live and active is not None and active.served_hash != target.served_hash:
        chain = protection_chains(state).get((ObjectType.FEATURE_VIEW, name))
        if chain is not None:
            raise PreventDestroyError(
                "feature view", name,
                f"promote v{version} (a different schema than the active v{active.number}) for", chain,
            )
    _check_services(state, name, version)
    return PointerMove(name, record.active_version, version, "promote")


def check_rollback(state: WorkspaceState, name: str, to: int | None, previous: int | None) -> PointerMove:
    """Validate a rollback of ``name`` to ``to`` (or to ``previous``, the version active before the
    current one) and return the move. A rollback is the on-call's way back, so protection does not
    stop it; services must still resolve."""
    record = _view(state, name)
    if record.active_version is None:
        raise NoPreviousVersion(f"Feature view '{name}' has no active version to roll back from.")
    target_number = to if to is not None else previous
    if target_number is None:
        raise NoPreviousVersion(
            f"Feature view '{name}' has no previous version to roll back to (v{record.active_version} was its first "
            "active version). Pass a version with --to, or promote another one."
        )
    if record.version(target_number) is None:
        raise FeatureViewVersionNotFound(name, target_number, [v.number for v in record.versions])
    if target_number == record.active_version:
        raise NoPreviousVersion(f"v{target_number} of '{name}' is already active; nothing to roll back.")
    _check_services(state, name, target_number)
    return PointerMove(name, record.active_version, target_number, "rollback")


def _check_services(state: WorkspaceState, view: str, version: int) -> None:
    record = state.feature_views[view]
    target = record.version(version)
    assert target is not None
    for service_name, service in sorted(state.feature_services.items()):
        missing = missing_service_features(service.spec, view, None, target.spec)
        if missing:
            raise DependencyConflictError(
                f"Feature service '{service_name}' uses {', '.join(f'{view}:{f}' for f in missing)}, which v{version} "
                f"of '{view}' does not have. Change the service (or pin it to the current version) first."
            )
