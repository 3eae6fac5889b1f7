"""DESIGN §11 (registry side): promote with compare-and-swap and audit, rollback, holds."""

from __future__ import annotations

import pytest

from feature_rollout.core.definitions import FeatureService
from feature_rollout.core.errors import (
    DependencyConflictError,
    FeatureViewNotFound,
    FeatureViewVersionNotFound,
    GateCheckFailed,
    InvalidVersionError,
    NoPreviousVersion,
    PromotionConflict,
    StalePlanError,
    VersionHeldError,
)
from feature_rollout.core.plan import ChangeKind
from feature_rollout.core.promotion import PointerMove
from tests.conftest import dump_registry

WIDE = ("conv_rate", "trips_today", "acc_rate")


@pytest.fixture
def staged(store, defs):
    """v0 active, v1 staged."""
    store.apply([defs.view()])
    store.apply([defs.view(WIDE)], no_promote=True)
    return store


def states(store):
    return {v["version"]: v["state"] for v in store.list_feature_view_versions("driver_stats")}


def test_promote_moves_the_pointer_and_audits(staged, monkeypatch):
    monkeypatch.setenv("FEATURE_ROLLOUT_ACTOR", "alice")
    move = staged.promote("driver_stats", "v1", require_gates=False, reason="parity ok", run_id="manual__1")
    assert move == PointerMove("driver_stats", 0, 1, "promote")
    assert states(staged) == {"v0": "retired", "v1": "active"}
    event = staged.history("driver_stats")[0]
    assert (event["kind"], event["from_version"], event["to_version"], event["actor"], event["run_id"],
            event["reason"]) == ("promote", 0, 1, "alice", "manual__1", "parity ok")


def test_promoting_the_active_version_is_a_noop(staged, registry_url):
    before = dump_registry(registry_url)
    assert staged.promote("driver_stats", 0, require_gates=False).is_noop
    assert dump_registry(registry_url) == before


@pytest.mark.parametrize(("view", "version", "error", "message"), [
    ("driver_stats", "v9", FeatureViewVersionNotFound, r"no version v9; existing versions: v0, v1"),
    ("nope", "v0", FeatureViewNotFound, r"Feature view 'nope' does not exist in workspace 'demo'"),
    ("driver_stats", "v-1", InvalidVersionError, r"'v-1' is not a valid version"),
    ("driver_stats", "latest", InvalidVersionError, r"not 'latest'"),
    ("driver_stats", -1, InvalidVersionError, r"negative"),
])
def test_bad_promotions_change_nothing(staged, registry_url, view, version, error, message):
    before = dump_registry(registry_url)
    with pytest.raises(error, match=message):
        staged.promote(view, version, require_gates=False)
    assert dump_registry(registry_url) == before


def test_gated_promotion_needs_a_materialized_version(staged, registry_url):
    before = dump_registry(registry_url)
    with pytest.raises(GateCheckFailed, match="v0 of 'driver_stats' has never been materialized"):
        staged.promote("driver_stats", "v1")
    assert dump_registry(registry_url) == before


def test_promotion_advances_the_revision_so_older_plans_go_stale(staged, defs):
    plan = staged.plan([defs.view(WIDE, description="x")])
    staged.promote("driver_stats", "v1", require_gates=False)
    with pytest.raises(StalePlanError):
        staged.apply(plan_id=plan.id)


def test_compare_and_swap_refuses_a_moved_pointer(staged):
    registry = staged.registry
    old_state = registry.load_state("demo")
    staged.promote("driver_stats", "v1", require_gates=False)
    with pytest.raises(PromotionConflict, match=r"expected v0, found v1"), registry.writing() as conn:
        registry._move_pointer(conn, old_state, PointerMove("driver_stats", 0, 1, "promote"), actor="x",
                               run_id=None, reason=None)
    assert states(staged) == {"v0": "retired", "v1": "active"}


def test_rollback_promotes_the_previous_version_and_holds(staged, defs):
    staged.promote("driver_stats", "v1", require_gates=False)
    move = staged.rollback("driver_stats", reason="bad values")
    assert (move.from_version, move.to_version, move.kind) == (1, 0, "rollback")
    assert states(staged) == {"v0": "active", "v1": "retired"}
    assert [e["kind"] for e in staged.history("driver_stats")[:2]] == ["hold", "rollback"]
    # A later apply of v1's definition reports the hold and does not promote.
    plan = staged.plan([defs.view(WIDE)])
    [change] = [c for c in plan.changes if c.name == "driver_stats"]
    assert (change.kind, change.held, change.promote) == (ChangeKind.REUSE_VERSION, True, False)
    assert "held by rollback" in plan.render()
    result = staged.apply([defs.view(WIDE)])
    assert result.held == (("driver_stats", 1),) and result.promoted == ()
    assert states(staged)["v0"] == "active"
    with pytest.raises(VersionHeldError, match="release-hold driver_stats"):
        staged.promote("driver_stats", 1, require_gates=False)
    # Released: the same apply promotes it again.
    assert staged.release_hold("driver_stats").versions == (1,)
    assert staged.release_hold("driver_stats") is None
    result = staged.apply([defs.view(WIDE)])
    assert result.promoted == (("driver_stats", 0, 1),)


def test_metadata_still_updates_while_a_version_is_held(staged, defs):
    staged.promote("driver_stats", "v1", require_gates=False)
    staged.rollback("driver_stats")
    staged.apply([defs.view(WIDE, description="new words")])
    assert staged.get_feature_view("driver_stats").description == "new words"
    assert staged.get_feature_view("driver_stats").current_version_number == 0


def test_rollback_to_a_given_version_and_twice(store, defs):
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate",))])
    store.apply([defs.view(WIDE)])
    assert store.rollback("driver_stats").to_version == 1
    assert store.rollback("driver_stats").to_version == 0
    held = store.registry.get_view("demo", "driver_stats").hold
    assert held is not None and held.versions == (1, 2)
    store.release_hold("driver_stats")
    assert store.rollback("driver_stats", to="v2").to_version == 2


def test_rollback_without_a_previous_version(store, defs, registry_url):
    store.apply([defs.view()])
    before = dump_registry(registry_url)
    with pytest.raises(NoPreviousVersion, match="no previous version"):
        store.rollback("driver_stats")
    with pytest.raises(NoPreviousVersion, match="already active"):
        store.rollback("driver_stats", to=0)
    assert dump_registry(registry_url) == before


def test_promotion_keeps_services_resolvable(store, defs, registry_url):
    view = defs.view()
    store.apply([view, FeatureService(name="svc", features=[view[["trips_today"]]])])
    store.apply([defs.view(("conv_rate",))], no_promote=True)
    before = dump_registry(registry_url)
    with pytest.raises(DependencyConflictError, match="uses driver_stats:trips_today, which v1"):
        store.promote("driver_stats", "v1", require_gates=False)
    assert dump_registry(registry_url) == before
