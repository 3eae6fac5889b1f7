"""One exception class per failure.

Every message says what is wrong and what to do about it. ``exit_code`` is what the command line
returns for the error (DESIGN §14): ``2`` for bad input, ``1`` for a check that failed.
"""

from __future__ import annotations

from collections.abc import Sequence

BAD_INPUT = 2
FAILED_CHECK = 1


class FeatureRolloutError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code: int = BAD_INPUT


# --- definitions ------------------------------------------------------------------------------


class InvalidDefinitionError(FeatureRolloutError, ValueError):
    """A definition breaks a rule (names, schema, references)."""


class InvalidNameError(InvalidDefinitionError):
    """A name does not match ``^[A-Za-z][A-Za-z0-9_]{0,62}$`` or uses a reserved character."""


class InvalidVersionError(InvalidDefinitionError):
    """A version string is neither ``latest`` nor ``vN``/``versionN``."""


class InvalidReferenceError(InvalidDefinitionError):
    """A feature or view reference such as ``driver_stats@v2:trips`` cannot be parsed."""


class DuplicateObjectError(InvalidDefinitionError):
    """Two different objects of one kind share a name."""


class UnknownReferenceError(InvalidDefinitionError):
    """A definition refers to an entity, source, view or feature that does not exist."""


class EmptySchemaError(InvalidDefinitionError):
    """A feature view declares no features."""


class RepoConfigError(FeatureRolloutError):
    """``feature_store.yaml`` is missing or wrong, or a repo file cannot be imported."""


# --- versions ---------------------------------------------------------------------------------


class FeatureViewNotFound(FeatureRolloutError, LookupError):
    """No feature view of that name in the workspace."""

    def __init__(self, name: str, workspace: str) -> None:
        self.name = name
        self.workspace = workspace
        super().__init__(
            f"Feature view '{name}' does not exist in workspace '{workspace}'. "
            "Check the name, or apply a definition for it first."
        )


class FeatureViewVersionNotFound(FeatureRolloutError, LookupError):
    """The view exists but has no such version."""

    def __init__(self, name: str, version: int, existing: Sequence[int], hint: str | None = None) -> None:
        self.name = name
        self.version = version
        self.existing = tuple(existing)
        listed = ", ".join(f"v{n}" for n in self.existing) if self.existing else "none"
        message = f"Feature view '{name}' has no version v{version}; existing versions: {listed}."
        super().__init__(f"{message} {hint}" if hint else message)


class FeatureViewPinConflict(FeatureRolloutError):
    """A view pins a version (``version="vN"``) whose schema differs from the definition being applied."""

    def __init__(self, name: str, version: int, message: str | None = None) -> None:
        self.name = name
        self.version = version
        super().__init__(message or (
            f"Feature view '{name}' pins version='v{version}' but its definition differs from both the active "
            f"definition and the v{version} snapshot. To pin, change only the version field; to change the "
            f"definition, set version='latest'."
        ))


class ObjectNotFound(FeatureRolloutError, LookupError):
    """An entity, data source or feature service is not registered."""


# --- plans ------------------------------------------------------------------------------------


class PlanNotFoundError(FeatureRolloutError, LookupError):
    """No stored plan with that id in the workspace."""

    def __init__(self, plan_id: str, workspace: str) -> None:
        self.plan_id = plan_id
        super().__init__(
            f"No stored plan with id '{plan_id}' in workspace '{workspace}'. Run `feature-rollout plan` and "
            "apply the id it prints."
        )


class StalePlanError(FeatureRolloutError):
    """The workspace changed (its revision moved) since the plan was made: plan again."""

    exit_code = FAILED_CHECK

    def __init__(self, plan_id: str | None, workspace: str, base_revision: int, current_revision: int,
                 already_applied: bool = False) -> None:
        self.plan_id = plan_id
        self.workspace = workspace
        self.base_revision = base_revision
        self.current_revision = current_revision
        self.already_applied = already_applied
        what = f"Plan '{plan_id}'" if plan_id else "The plan"
        if already_applied:
            reason = "has already been applied"
        else:
            reason = (f"was made at revision {base_revision} of workspace '{workspace}', which is now at revision "
                      f"{current_revision}")
        super().__init__(f"{what} {reason}; nothing was changed. Run `feature-rollout plan` again, review it, and "
                         "apply the new plan id.")


class PreventDestroyError(FeatureRolloutError):
    """A plan would delete or recreate a protected object (``prevent_destroy``) in a live workspace."""

    exit_code = FAILED_CHECK

    def __init__(self, object_type: str, name: str, action: str, chain: Sequence[str]) -> None:
        self.object_type = object_type
        self.name = name
        self.action = action
        self.chain = tuple(chain)
        via = " -> ".join(self.chain)
        super().__init__(
            f"Refusing to {action} {object_type} '{name}': it is protected by prevent_destroy ({via}). "
            "To change it, first set prevent_destroy=False on the protecting object and apply, then apply the "
            "change; for a protected feature view, stage the new version with --no-promote and promote it "
            "through the gates instead."
        )


class RecreateNotSuppressible(FeatureRolloutError):
    """``suppress_recreates`` cannot turn this recreate into an in-place update."""

    def __init__(self, object_type: str, name: str, reason: str) -> None:
        self.object_type = object_type
        self.name = name
        super().__init__(
            f"suppress_recreates cannot turn the change to {object_type} '{name}' into an in-place update: "
            f"{reason}. Apply without --suppress-recreates so that a new version (or a recreate) is planned."
        )


class OnlineTableConflict(InvalidDefinitionError):
    """Two versions would get the same online table name."""

    def __init__(self, table: str, wanted_by: str, owned_by: str) -> None:
        self.table = table
        super().__init__(
            f"The online table '{table}' of {wanted_by} is already the table of {owned_by} (names follow "
            "{workspace}_{view}_v{N}, as in Feast). Rename the feature view so that its table names cannot meet."
        )


class DependencyConflictError(FeatureRolloutError):
    """A change would leave another object pointing at something that no longer exists."""


# --- workspaces -------------------------------------------------------------------------------


class WorkspaceNotFound(FeatureRolloutError, LookupError):
    """The workspace does not exist in the registry."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"Workspace '{name}' does not exist. Create it with `feature-rollout workspace create {name}` "
            "(add --live for a production workspace)."
        )


class WorkspaceExists(FeatureRolloutError):
    """A workspace of that name already exists."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"Workspace '{name}' already exists; `feature-rollout workspace list` shows it.")


# --- promotion --------------------------------------------------------------------------------


class PromotionConflict(FeatureRolloutError):
    """The active version moved while promoting (compare-and-swap failed): look again and retry."""

    exit_code = FAILED_CHECK

    def __init__(self, name: str, expected: int | None, found: int | None) -> None:
        self.name = name
        super().__init__(
            f"The active version of '{name}' moved while promoting (expected {_v(expected)}, found {_v(found)}); "
            "nothing was changed. Look at `feature-rollout feature-views list-versions` and try again."
        )


class VersionHeldError(FeatureRolloutError):
    """The version is held by a rollback; release the hold before promoting it."""

    exit_code = FAILED_CHECK

    def __init__(self, name: str, version: int) -> None:
        self.name = name
        self.version = version
        super().__init__(
            f"v{version} of '{name}' is held back by a rollback. Run `feature-rollout release-hold {name}` "
            "before promoting it again."
        )


class NoPreviousVersion(FeatureRolloutError):
    """A rollback has nothing to go back to."""

    exit_code = FAILED_CHECK


class GateCheckFailed(FeatureRolloutError):
    """Readiness or parity does not allow a gated promotion."""

    exit_code = FAILED_CHECK


# --- registry ---------------------------------------------------------------------------------


class RegistryUnavailableError(FeatureRolloutError):
    """The registry database cannot be reached or opened."""

    exit_code = FAILED_CHECK


def _v(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


# --- data plane -------------------------------------------------------------------------------


class SourceNotFoundError(FeatureRolloutError):
    """A source's Parquet path matches no file."""


class SchemaMismatchError(FeatureRolloutError):
    """A source's columns do not match what a view declares (missing column, incompatible type)."""


class NaiveTimestampError(FeatureRolloutError, ValueError):
    """A timestamp passed in (an interval bound, a spine column) has no time zone."""


class EntityKeyError(FeatureRolloutError, ValueError):
    """Entity rows or a spine lack a join key, or carry an unusable one."""


class OnlineStoreUnavailableError(FeatureRolloutError):
    """The online store (PostgreSQL, Redis, a SQLite file) cannot be reached or opened."""

    exit_code = FAILED_CHECK


class OnlineStoreError(FeatureRolloutError):
    """The online store refused an operation (for example a table with another shape exists)."""

    exit_code = FAILED_CHECK


class OnlineTableMissing(OnlineStoreError):
    """A version's online table is not in the online store (e.g. Redis lost its data, or someone dropped
    it). Materializing the version creates it again."""

    def __init__(self, table: str, where: str) -> None:
        self.table = table
        super().__init__(
            f"The online table '{table}' does not exist in {where}. Materialize the version to create and fill "
            "it again (`feature-rollout materialize` or the rollout DAG); the apply that creates a version "
            "creates its table too."
        )


class VersionPrunedError(FeatureRolloutError):
    """A version's online table was dropped by ``prune``; it can no longer be read or promoted online."""


class ParityFailed(FeatureRolloutError):
    """Raised where a failed parity report must stop something (CLI exit code 1)."""

    exit_code = FAILED_CHECK
