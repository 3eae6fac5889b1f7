"""``check_promote`` and ``check_rollback`` on hand-built states (DESIGN §11)."""

from __future__ import annotations

import pytest

from feature_rollout.core.definitions import FeatureService, FileSource
from feature_rollout.core.errors import (
    DependencyConflictError,
    FeatureViewNotFound,
    FeatureViewVersionNotFound,
    NoPreviousVersion,
    PreventDestroyError,
    VersionHeldError,
)
from feature_rollout.core.promotion import PointerMove, check_promote, check_rollback
from feature_rollout.core.state import Hold, VersionState
from tests.core.builders import DRIVER, SOURCE, history, state, view

ACTIVE, STAGED, RETIRED = VersionState.ACTIVE, VersionState.STAGED, VersionState.RETIRED
V0 = view(("conv_rate", "trips_today"))
V1 = view(("conv_rate", "trips_today", "acc_rate"))
V2 = view(("conv_rate",))
# v0 retired, v1 active, v2 staged.
THREE = state(history((V0, RETIRED), (V1, ACTIVE), (V2, STAGED)))


# --- promote -------------------------------------------------------------------------------------------


def test_promote_a_staged_version():
    move = check_promote(THREE, "driver_stats", 2)
    assert move == PointerMove("driver_stats", 1, 2, "promote")
    assert not move.is_noop


def test_promote_a_retired_version():
    assert check_promote(THREE, "driver_stats", 0) == PointerMove("driver_stats", 1, 0, "promote")


def test_promote_the_active_version_is_a_noop():
    move = check_promote(THREE, "driver_stats", 1)
    assert move == PointerMove("driver_stats", 1, 1, "promote")
    assert move.is_noop


def test_promote_when_nothing_is_active_yet():
    move = check_promote(state(history((V0, STAGED))), "driver_stats", 0)
    assert (move.from_version, move.to_version, move.is_noop) == (None, 0, False)


@pytest.mark.parametrize("check", [lambda s: check_promote(s, "nope", 0),
                                   lambda s: check_rollback(s, "nope", None, 0)])
def test_an_unknown_view_is_not_found(check):
    with pytest.raises(FeatureViewNotFound) as err:
        check(THREE)
    assert str(err.value) == ("Feature view 'nope' does not exist in workspace 'demo'. Check the name, or apply a "
                              "definition for it first.")
    assert (err.value.name, err.value.workspace) == ("nope", "demo")


def test_a_deleted_view_is_not_found():
    with pytest.raises(FeatureViewNotFound, match=r"^Feature view 'driver_stats' does not exist in workspace 'demo'"):
        check_promote(state(history((V0, RETIRED), deleted=True)), "driver_stats", 0)


def test_promote_a_missing_version_lists_the_existing_ones():
    with pytest.raises(FeatureViewVersionNotFound) as err:
        check_promote(THREE, "driver_stats", 7)
    assert str(err.value) == "Feature view 'driver_stats' has no version v7; existing versions: v0, v1, v2."
    assert (err.value.version, err.value.existing) == (7, (0, 1, 2))


def test_promote_a_held_version():
    held = state(history((V0, RETIRED), (V1, ACTIVE), hold=Hold(versions=(0,), reason="bad data")))
    with pytest.raises(VersionHeldError) as err:
        check_promote(held, "driver_stats", 0)
    assert str(err.value) == ("v0 of 'driver_stats' is held back by a rollback. Run `feature-rollout release-hold "
                              "driver_stats` before promoting it again.")
    assert err.value.exit_code == 1


def test_a_hold_on_another_version_does_not_block():
    held = state(history((V0, RETIRED), (V1, ACTIVE), (V2, STAGED), hold=Hold(versions=(0,))))
    assert check_promote(held, "driver_stats", 2) == PointerMove("driver_stats", 1, 2, "promote")


def test_promote_a_protected_view_to_a_different_schema():
    protected = state(history((view(V0.feature_names, prevent_destroy=True), ACTIVE), (V1, STAGED)))
    with pytest.raises(PreventDestroyError) as err:
        check_promote(protected, "driver_stats", 1)
    assert str(err.value).startswith(
        "Refusing to promote v1 (a different schema than the active v0) for feature view 'driver_stats': it is "
        "protected by prevent_destroy (feature view 'driver_stats' has prevent_destroy=True)."
    )


def test_promote_a_protected_view_to_the_same_served_schema():
    moved = view(V0.feature_names, source=FileSource(name="driver_stats_source", path="s3://b/stats.parquet",
                                                           created_timestamp_column="created"))
    protected = state(history((view(V0.feature_names, prevent_destroy=True), ACTIVE), (moved, STAGED)))
    assert check_promote(protected, "driver_stats", 1) == PointerMove("driver_stats", 0, 1, "promote")


def test_protection_does_not_apply_in_a_development_workspace():
    dev = state(history((view(V0.feature_names, prevent_destroy=True), ACTIVE), (V1, STAGED)), live=False)
    assert check_promote(dev, "driver_stats", 1).to_version == 1


def test_promote_a_version_that_lacks_a_feature_a_service_reads():
    svc = FeatureService(name="driver_svc", features=[V1[["acc_rate"]]])
    current = state(history((V0, RETIRED), (V1, ACTIVE)), objects=(DRIVER, SOURCE, svc))
    with pytest.raises(DependencyConflictError) as err:
        check_promote(current, "driver_stats", 0)
    assert str(err.value) == ("Feature service 'driver_svc' uses driver_stats:acc_rate, which v0 of 'driver_stats' "
                              "does not have. Change the service (or pin it to the current version) first.")


def test_a_service_pinned_to_a_version_does_not_block_promotion():
    svc = FeatureService(name="driver_svc", features=["driver_stats@v1:acc_rate"])
    current = state(history((V0, RETIRED), (V1, ACTIVE)), objects=(DRIVER, SOURCE, svc))
    assert check_promote(current, "driver_stats", 0).to_version == 0


# --- rollback ------------------------------------------------------------------------------------------


def test_rollback_to_the_previous_version():
    assert check_rollback(THREE, "driver_stats", None, 0) == PointerMove("driver_stats", 1, 0, "rollback")


def test_rollback_to_a_given_version_wins_over_previous():
    assert check_rollback(THREE, "driver_stats", 2, 0) == PointerMove("driver_stats", 1, 2, "rollback")


def test_rollback_without_a_previous_version():
    with pytest.raises(NoPreviousVersion) as err:
        check_rollback(THREE, "driver_stats", None, None)
    assert str(err.value) == (
        "Feature view 'driver_stats' has no previous version to roll back to (v1 was its first active version). "
        "Pass a version with --to, or promote another one."
    )
    assert err.value.exit_code == 1


def test_rollback_without_an_active_version():
    with pytest.raises(NoPreviousVersion,
                       match=r"^Feature view 'driver_stats' has no active version to roll back from.$"):
        check_rollback(state(history((V0, STAGED))), "driver_stats", None, 0)


def test_rollback_to_a_missing_version():
    with pytest.raises(FeatureViewVersionNotFound,
                       match=r"^Feature view 'driver_stats' has no version v9; existing versions: v0, v1, v2.$"):
        check_rollback(THREE, "driver_stats", 9, None)


def test_rollback_to_the_active_version():
    with pytest.raises(NoPreviousVersion, match=r"^v1 of 'driver_stats' is already active; nothing to roll back.$"):
        check_rollback(THREE, "driver_stats", 1, None)


def test_rollback_ignores_protection():
    protected = state(history((V0, RETIRED), (view(V1.feature_names, prevent_destroy=True), ACTIVE)))
    assert check_rollback(protected, "driver_stats", None, 0) == PointerMove("driver_stats", 1, 0, "rollback")


def test_rollback_still_checks_services():
    svc = FeatureService(name="driver_svc", features=[V1[["acc_rate"]]])
    current = state(history((V0, RETIRED), (V1, ACTIVE)), objects=(DRIVER, SOURCE, svc))
    with pytest.raises(DependencyConflictError, match=r"^Feature service 'driver_svc' uses driver_stats:acc_rate, "
                                                      r"which v0 of 'driver_stats' does not have."):
        check_rollback(current, "driver_stats", None, 0)
