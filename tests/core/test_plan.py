"""``plan(current, desired, options)`` on plain values (DESIGN §6, §7, §8, §11)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from feature_rollout.core.definitions import Entity, FeatureService, FeatureView, Field, FileSource
from feature_rollout.core.errors import (
    DuplicateObjectError,
    EmptySchemaError,
    FeatureViewPinConflict,
    FeatureViewVersionNotFound,
    InvalidDefinitionError,
    OnlineTableConflict,
    PreventDestroyError,
    RecreateNotSuppressible,
    UnknownReferenceError,
)
from feature_rollout.core.plan import (
    Change,
    ChangeKind,
    Materialization,
    ObjectType,
    Plan,
    PlanOptions,
    Serving,
    collect,
    plan,
    protection_chains,
)
from feature_rollout.core.state import Hold, VersionState, WorkspaceState
from feature_rollout.core.types import Int64
from tests.core.builders import DRIVER, SOURCE, history, resolved, state, view

ACTIVE, STAGED, RETIRED = VersionState.ACTIVE, VersionState.STAGED, VersionState.RETIRED
EMPTY = WorkspaceState(name="demo")
V0 = view(("conv_rate", "trips_today"))
V1 = view(("conv_rate", "trips_today", "acc_rate"))
MOVED_SOURCE = FileSource(name="driver_stats_source", path="data/driver_stats_2024.parquet",
                          created_timestamp_column="created")


def view_change(p: Plan, name: str = "driver_stats") -> Change:
    [change] = [c for c in p.changes if c.object_type is ObjectType.FEATURE_VIEW and c.name == name]
    return change


def kinds(p: Plan) -> list[tuple[str, str, str]]:
    return [(c.object_type.value, c.name, c.kind.value) for c in p.changes]


# --- first apply, from an empty workspace -------------------------------------------------------------


def test_first_apply_creates_v0_active_in_dependency_order():
    svc = FeatureService(name="driver_svc", features=[V0])
    p = plan(EMPTY, collect([svc]), PlanOptions())
    assert kinds(p) == [("entity", "driver", "create"), ("data_source", "driver_stats_source", "create"),
                        ("feature_view", "driver_stats", "create"), ("feature_service", "driver_svc", "create")]
    change = view_change(p)
    assert (change.from_version, change.to_version, change.promote, change.state) == (None, 0, True, ACTIVE)
    assert change.serving is Serving.NEW_TABLE
    assert change.materialization == Materialization("driver_stats", 0, "backfill")
    assert change.online_table == "demo_driver_stats"
    assert change.spec == resolved(V0)
    assert (p.workspace, p.base_revision, p.has_changes, p.summary) == ("demo", 0, True, {"create": 4})


def test_first_apply_under_no_promote_stages_v0():
    p = plan(EMPTY, collect([V0]), PlanOptions(no_promote=True))
    change = view_change(p)
    assert (change.kind, change.to_version, change.promote, change.state) == (ChangeKind.CREATE, 0, False, STAGED)
    assert change.serving is Serving.NEW_TABLE
    assert p.has_changes


def test_a_service_may_name_a_view_that_is_only_staged():
    # Nothing can be served from the view before a promotion; reads through the service say so then.
    p = plan(EMPTY, collect([FeatureService(name="driver_svc", features=[V0])]), PlanOptions(no_promote=True))
    assert [(c.name, c.kind.value, c.state.value if c.state else None) for c in p.changes
            if c.object_type in (ObjectType.FEATURE_VIEW, ObjectType.FEATURE_SERVICE)] == [
        ("driver_stats", "create", "staged"), ("driver_svc", "create", None)]


def test_changes_are_ordered_by_kind_then_name():
    rider = Entity(name="rider", join_keys=["rider_id"])
    rider_view = view(("city",), name="a_rider_view", entity=rider,
                      source=FileSource(name="rider_source", path="data/riders.parquet"))
    objects = [FeatureService(name="z_svc", features=[V0]), FeatureService(name="a_svc", features=[rider_view]),
               V0, rider_view]
    assert kinds(plan(EMPTY, collect(objects))) == [
        ("entity", "driver", "create"), ("entity", "rider", "create"),
        ("data_source", "driver_stats_source", "create"), ("data_source", "rider_source", "create"),
        ("feature_view", "a_rider_view", "create"), ("feature_view", "driver_stats", "create"),
        ("feature_service", "a_svc", "create"), ("feature_service", "z_svc", "create"),
    ]


def test_plan_id_is_a_deterministic_content_hash():
    first = plan(EMPTY, collect([V0]), PlanOptions())
    again = plan(EMPTY, collect([V0]), PlanOptions())
    assert re.fullmatch(r"[0-9a-f]{16}", first.id)
    assert first.id == again.id
    others = {
        plan(EMPTY, collect([V0]), PlanOptions(no_promote=True)).id,
        plan(EMPTY, collect([V0]), PlanOptions(suppress_recreates=True)).id,
        plan(WorkspaceState(name="demo", revision=1), collect([V0])).id,
        plan(WorkspaceState(name="other"), collect([V0])).id,
        plan(EMPTY, collect([V1])).id,
        plan(EMPTY, collect([view(description="x")])).id,
    }
    assert first.id not in others
    assert len(others) == 6


def test_render_of_a_first_apply():
    p = plan(EMPTY, collect([FeatureService(name="driver_svc", features=[V0])]))
    assert p.render() == "\n".join([
        f"Plan {p.id} for workspace 'demo' at revision 0",
        "  + create entity driver",
        "  + create data source driver_stats_source",
        "  + create feature view driver_stats v0 (active) [table demo_driver_stats]",
        "  + create feature service driver_svc",
    ])
    assert str(p) == p.render()


def test_render_names_the_options():
    p = plan(EMPTY, collect([V0]), PlanOptions(no_promote=True, suppress_recreates=True))
    head = f"Plan {p.id} for workspace 'demo' at revision 0 (no-promote, suppress-recreates)"
    assert p.render().splitlines()[0] == head
    assert "  + create feature view driver_stats v0 (staged) [table demo_driver_stats]" in p.render().splitlines()


def test_to_json_is_the_documented_shape():
    p = plan(EMPTY, collect([V0]))
    data = p.to_json()
    assert list(data) == ["format_version", "id", "workspace", "base_revision", "options", "has_changes", "summary",
                          "warnings", "changes"]
    assert (data["format_version"], data["id"], data["workspace"], data["base_revision"]) == (1, p.id, "demo", 0)
    assert data["options"] == {"no_promote": False, "suppress_recreates": False, "partial": False}
    assert (data["has_changes"], data["summary"], data["warnings"]) == (True, {"create": 3}, [])
    view_json = data["changes"][2]
    assert set(view_json) == {"kind", "object_type", "name", "from_version", "to_version", "promote", "state",
                              "serving", "materialization", "held", "amend", "updates_metadata", "online_table",
                              "details", "warnings", "schema_hash"}
    assert {k: view_json[k] for k in ("kind", "object_type", "name", "to_version", "state", "serving",
                                      "materialization", "online_table")} == {
        "kind": "create", "object_type": "feature_view", "name": "driver_stats", "to_version": 0, "state": "active",
        "serving": "new_table", "materialization": {"view": "driver_stats", "version": 0, "range": "backfill"},
        "online_table": "demo_driver_stats",
    }
    assert view_json["schema_hash"] == view_change(p).fingerprint.schema_hash
    assert "spec" not in view_json


def test_plan_record_round_trips():
    p = plan(EMPTY, collect([FeatureService(name="driver_svc", features=[V0])]), PlanOptions())
    again = Plan.from_record(p.to_record())
    assert again == p
    assert again.id == p.id
    assert view_change(again).spec == view_change(p).spec
    assert view_change(again).fingerprint == view_change(p).fingerprint


def test_a_tampered_plan_record_is_refused():
    record = plan(EMPTY, collect([V0])).to_record()
    record["changes"][2]["online_table"] = "demo_other"
    message = rf"^Stored plan {record['id']} does not match its content \(hash [0-9a-f]{{16}}\).$"
    with pytest.raises(ValueError, match=message):
        Plan.from_record(record)


# --- collect ----------------------------------------------------------------------------------------


def test_collect_brings_sources_entities_and_views_along():
    desired = collect([FeatureService(name="driver_svc", features=[V0[["conv_rate"]]])])
    assert (list(desired.entities), list(desired.data_sources), list(desired.feature_views),
            list(desired.feature_services)) == (["driver"], ["driver_stats_source"], ["driver_stats"], ["driver_svc"])
    assert desired.feature_views["driver_stats"] == V0.to_spec()


def test_collect_accepts_the_same_object_twice():
    desired = collect([V0, V0, view(), DRIVER, FeatureService(name="s", features=[V0])])
    assert list(desired.feature_views) == ["driver_stats"]
    assert list(desired.entities) == ["driver"]


def test_two_different_views_with_one_name():
    with pytest.raises(DuplicateObjectError) as err:
        collect([FeatureService(name="svc", features=[V0]), V1])
    assert str(err.value) == (
        "Two different feature views are named 'driver_stats' (feature view 'driver_stats' (in feature service "
        "'svc'), and feature view 'driver_stats'); rename one, or define it once and pass or import that one "
        "object."
    )


def test_two_different_sources_with_one_name():
    with pytest.raises(DuplicateObjectError,
                       match=r"^Two different data sources are named 'driver_stats_source' \(data source "
                             r"'driver_stats_source', and the source of feature view 'driver_stats'\)"):
        collect([SOURCE, view(source=MOVED_SOURCE)])


def test_two_different_entities_with_one_name():
    with pytest.raises(DuplicateObjectError,
                       match=r"^Two different entities are named 'driver' \(entity 'driver', and an entity of "
                             r"feature view 'driver_stats'\)"):
        collect([Entity(name="driver", join_keys=["id"]), V0])


def test_collect_rejects_what_is_not_a_definition():
    with pytest.raises(InvalidDefinitionError, match=r"^'driver_stats' is not a definition; pass Entity, FileSource"):
        collect(["driver_stats"])


def test_unknown_entity_referenced_by_name():
    fv = FeatureView(name="fv", source=SOURCE, entities=["rider"], schema=[Field(name="a", dtype=Int64)])
    with pytest.raises(UnknownReferenceError,
                       match=r"^Feature view 'fv' uses entity 'rider', which is not defined. Define it in the repo, "
                             r"or fix the name.$"):
        plan(EMPTY, collect([fv]))


def test_entity_referenced_by_name_resolves_against_the_desired_entities():
    fv = FeatureView(name="fv", source=SOURCE, entities=["driver"],
                     schema=[Field(name="driver_id", dtype=Int64), Field(name="a", dtype=Int64)])
    change = view_change(plan(EMPTY, collect([DRIVER, fv])), "fv")
    assert change.spec["join_keys"] == [{"name": "driver_id", "dtype": "Int64", "entity": "driver"}]
    assert [f["name"] for f in change.spec["features"]] == ["a"]


def test_a_view_whose_only_field_is_the_key_of_an_entity_named_by_string():
    fv = FeatureView(name="fv", source=SOURCE, entities=["driver"], schema=[Field(name="driver_id", dtype=Int64)])
    with pytest.raises(EmptySchemaError,
                       match=r"^Feature view 'fv' has no features besides its join keys; add a Field.$"):
        plan(EMPTY, collect([DRIVER, fv]))


@pytest.mark.parametrize("version", ["v1", "v7"])
def test_a_pin_on_a_brand_new_view(version):
    with pytest.raises(FeatureViewVersionNotFound) as err:
        plan(EMPTY, collect([view(version=version)]))
    assert str(err.value) == (
        f"Feature view 'driver_stats' has no version {version}; existing versions: none. A new view starts at v0: "
        "use version='latest'."
    )
    assert (err.value.name, err.value.existing) == ("driver_stats", ())


def test_pinning_v0_on_a_brand_new_view_declares_it():
    change = view_change(plan(EMPTY, collect([view(version="v0")])))
    assert (change.kind, change.to_version, change.state) == (ChangeKind.CREATE, 0, ACTIVE)


# --- versioning against a registered view (DESIGN §6) -------------------------------------------------


def test_reapplying_the_same_definition_is_unchanged():
    p = plan(state(history((V0, ACTIVE))), collect([V0]))
    change = view_change(p)
    assert (change.kind, change.from_version, change.to_version, change.promote) == (ChangeKind.UNCHANGED, 0, 0, False)
    assert not p.has_changes
    assert p.render().splitlines()[1:] == ["  = 3 object(s) unchanged", "  No changes to apply."]
    # Unchanged objects carry no spec into the stored plan.
    assert all(c.spec is None for c in p.changes)


def test_metadata_only_is_updated_in_place():
    p = plan(state(history((V0, ACTIVE))), collect([view(description="Hourly", ttl=timedelta(days=2))]))
    change = view_change(p)
    assert (change.kind, change.to_version, change.updates_metadata) == (ChangeKind.UPDATE_IN_PLACE, 0, True)
    assert change.details == ("~ description: '' -> 'Hourly'", "~ ttl_seconds: 86400 -> 172800")
    assert "  ~ update feature view driver_stats in place" in p.render().splitlines()


def test_a_schema_change_is_a_new_active_version():
    p = plan(state(history((V0, ACTIVE))), collect([V1]))
    change = view_change(p)
    assert (change.kind, change.from_version, change.to_version, change.promote, change.state) == (
        ChangeKind.NEW_VERSION, 0, 1, True, ACTIVE)
    assert change.serving is Serving.SCHEMA_CHANGE
    assert change.online_table == "demo_driver_stats_v1"
    assert change.details == ("+ feature acc_rate: Float32",)
    lines = p.render().splitlines()
    assert "  ^ new version v1 (active) of feature view driver_stats [table demo_driver_stats_v1]" in lines
    assert "      + feature acc_rate: Float32" in lines


def test_a_new_version_follows_the_highest_not_the_active():
    current = state(history((V0, RETIRED), (V1, ACTIVE), (view(("city",)), RETIRED)))
    change = view_change(plan(current, collect([view(("conv_rate",))])))
    assert (change.kind, change.from_version, change.to_version) == (ChangeKind.NEW_VERSION, 1, 3)


def test_a_schema_change_under_no_promote_is_staged():
    p = plan(state(history((V0, ACTIVE))), collect([V1]), PlanOptions(no_promote=True))
    change = view_change(p)
    assert (change.kind, change.to_version, change.promote, change.state) == (ChangeKind.NEW_VERSION, 1, False, STAGED)
    assert change.serving is Serving.NEW_TABLE
    assert "  ^ new version v1 (staged) of feature view driver_stats [table demo_driver_stats_v1]" in p.render()


def test_a_source_move_that_keeps_the_served_schema_is_a_new_table_not_a_schema_change():
    p = plan(state(history((V0, ACTIVE))), collect([view(source=MOVED_SOURCE)]))
    assert kinds(p)[1] == ("data_source", "driver_stats_source", "recreate")
    change = view_change(p)
    assert (change.kind, change.serving) == (ChangeKind.NEW_VERSION, Serving.NEW_TABLE)
    assert change.details == ("~ source path: 'data/driver_stats.parquet' -> 'data/driver_stats_2024.parquet'",)
    assert "  ! recreate data source driver_stats_source" in p.render().splitlines()


def test_a_schema_equal_to_a_retired_snapshot_reuses_it():
    p = plan(state(history((V0, RETIRED), (V1, ACTIVE))), collect([V0]))
    change = view_change(p)
    assert (change.kind, change.from_version, change.to_version, change.promote, change.state) == (
        ChangeKind.REUSE_VERSION, 1, 0, True, ACTIVE)
    assert change.materialization == Materialization("driver_stats", 0, "catch_up")
    assert change.online_table == "demo_driver_stats"
    assert "  > reuse v0 of feature view driver_stats (active)" in p.render().splitlines()


def test_reuse_under_no_promote_restages_the_snapshot():
    p = plan(state(history((V0, RETIRED), (V1, ACTIVE))), collect([V0]), PlanOptions(no_promote=True))
    change = view_change(p)
    assert (change.kind, change.to_version, change.promote, change.state) == (
        ChangeKind.REUSE_VERSION, 0, False, STAGED)
    assert p.has_changes


def test_a_plain_apply_promotes_the_matching_staged_version():
    p = plan(state(history((V0, ACTIVE), (V1, STAGED))), collect([V1]))
    change = view_change(p)
    assert (change.kind, change.from_version, change.to_version, change.promote, change.state) == (
        ChangeKind.PROMOTE_STAGED, 0, 1, True, ACTIVE)
    assert "  > promote staged v1 of feature view driver_stats" in p.render().splitlines()


def test_the_staged_version_stays_staged_under_no_promote():
    p = plan(state(history((V0, ACTIVE), (V1, STAGED))), collect([V1]), PlanOptions(no_promote=True))
    change = view_change(p)
    assert (change.kind, change.to_version, change.state, change.promote) == (ChangeKind.UNCHANGED, 1, STAGED, False)
    assert change.details[-1] == "matches staged v1"
    assert not p.has_changes


def test_a_held_version_is_not_promoted():
    current = state(history((V0, RETIRED), (V1, ACTIVE), hold=Hold(versions=(0,), reason="bad data")))
    p = plan(current, collect([V0]))
    change = view_change(p)
    assert (change.kind, change.to_version, change.held, change.promote) == (ChangeKind.REUSE_VERSION, 0, True, False)
    assert change.state is RETIRED
    assert change.warnings == ("feature view 'driver_stats': v0 is held by a rollback and is not promoted; run "
                               "`feature-rollout release-hold driver_stats` to allow it.",)
    assert not p.has_changes
    lines = p.render().splitlines()
    assert ("  > reuse v0 of feature view driver_stats - held by rollback: stays at v1; run release-hold to allow it"
            in lines)
    assert lines[-1] == f"  WARNING: {change.warnings[0]}"


def test_a_pin_to_a_held_version_is_held_too():
    current = state(history((V0, RETIRED), (V1, ACTIVE), hold=Hold(versions=(0,))))
    change = view_change(plan(current, collect([view(V1.feature_names, version="v0")])))
    assert (change.kind, change.held, change.promote) == (ChangeKind.PIN, True, False)


def test_pin_when_only_the_version_changes():
    p = plan(state(history((V0, RETIRED), (V1, ACTIVE))), collect([view(V1.feature_names, version="v0")]))
    change = view_change(p)
    assert (change.kind, change.from_version, change.to_version, change.promote, change.state) == (
        ChangeKind.PIN, 1, 0, True, ACTIVE)
    assert change.serving is Serving.SCHEMA_CHANGE
    assert "  @ pin feature view driver_stats to v0" in p.render().splitlines()


def test_pin_under_no_promote_is_not_applied():
    p = plan(state(history((V0, RETIRED), (V1, ACTIVE))), collect([view(version="v0")]), PlanOptions(no_promote=True))
    change = view_change(p)
    assert (change.kind, change.promote, change.held) == (ChangeKind.PIN, False, False)
    assert change.warnings == ("feature view 'driver_stats': the pin to v0 is not applied under --no-promote.",)
    assert not p.has_changes
    assert "  @ pin feature view driver_stats to v0 - not promoted (--no-promote)" in p.render().splitlines()


def test_reapplying_a_pin_is_unchanged():
    pinned = view(V1.feature_names, version="v0")
    fp_hash = view_change(plan(state(history((V0, RETIRED), (V1, ACTIVE))), collect([pinned]))).fingerprint.schema_hash
    current = state(history((V0, ACTIVE), (V1, RETIRED), pinned_schema_hash=fp_hash))
    assert view_change(plan(current, collect([pinned]))).kind is ChangeKind.UNCHANGED
    # Without the recorded pin, the same definition differs from both v0 and the active definition.
    with pytest.raises(FeatureViewPinConflict):
        plan(state(history((V0, ACTIVE), (V1, RETIRED))), collect([pinned]))


def test_pin_conflict_when_the_definition_differs_from_both():
    with pytest.raises(FeatureViewPinConflict) as err:
        plan(state(history((V0, RETIRED), (V1, ACTIVE))), collect([view(("city",), version="v0")]))
    assert str(err.value) == (
        "Feature view 'driver_stats' pins version='v0' but its definition differs from both the active definition "
        "and the v0 snapshot. To pin, change only the version field; to change the definition, set version='latest'."
    )


def test_pin_of_a_missing_version_lists_the_existing_ones():
    with pytest.raises(FeatureViewVersionNotFound) as err:
        plan(state(history((V0, RETIRED), (V1, ACTIVE))), collect([view(version="v5")]))
    assert str(err.value) == ("Feature view 'driver_stats' has no version v5; existing versions: v0, v1. Pin an "
                              "existing version, or declare the next one (v2).")


def test_forward_declaration_of_the_next_version():
    change = view_change(plan(state(history((V0, ACTIVE))), collect([view(V1.feature_names, version="v1")])))
    assert (change.kind, change.to_version, change.promote) == (ChangeKind.NEW_VERSION, 1, True)
    assert change.details[-1] == "forward declaration of v1"


def test_forward_declaration_of_an_existing_schema_is_a_conflict():
    with pytest.raises(FeatureViewPinConflict,
                       match=r"^Feature view 'driver_stats' declares version='v2', but its definition equals the "
                             r"existing v0; pin version='v0' instead.$"):
        plan(state(history((V0, RETIRED), (V1, ACTIVE))), collect([view(version="v2")]))


def test_suppress_recreates_amends_the_active_version():
    p = plan(state(history((V0, ACTIVE))), collect([view(source=MOVED_SOURCE)]), PlanOptions(suppress_recreates=True))
    source_change, change = p.changes[1], view_change(p)
    assert (source_change.kind, change.kind, change.amend, change.to_version) == (
        ChangeKind.UPDATE_IN_PLACE, ChangeKind.UPDATE_IN_PLACE, True, 0)
    assert len(p.warnings) == 2
    assert "  ~ update feature view driver_stats in place (amends v0 without a new version)" in p.render().splitlines()


def test_suppress_recreates_is_refused_when_the_served_schema_changes():
    with pytest.raises(RecreateNotSuppressible,
                       match=r"^suppress_recreates cannot turn the change to feature view 'driver_stats' into an "
                             r"in-place update: its served schema \(features, types or join keys\) changes. "):
        plan(state(history((V0, ACTIVE))), collect([V1]), PlanOptions(suppress_recreates=True))


def test_objects_missing_from_the_repo_are_deleted():
    svc = FeatureService(name="driver_svc", features=[V0])
    p = plan(state(history((V0, ACTIVE)), objects=(DRIVER, SOURCE, svc), live=False), collect([DRIVER]))
    assert kinds(p) == [("entity", "driver", "unchanged"), ("feature_service", "driver_svc", "delete"),
                        ("feature_view", "driver_stats", "delete"), ("data_source", "driver_stats_source", "delete")]
    assert view_change(p).from_version == 0
    assert view_change(p).serving is Serving.SCHEMA_CHANGE
    lines = p.render().splitlines()
    assert "  - delete feature service driver_svc" in lines
    assert "  - delete feature view driver_stats (its version history is kept)" in lines


def test_a_recreated_entity_is_rendered_with_its_details():
    p = plan(state(history((V0, ACTIVE)), live=False),
             collect([view(entity=Entity(name="driver", join_keys=["driver_id"], value_type=Int64))]))
    assert kinds(p)[0] == ("entity", "driver", "recreate")
    assert p.changes[0].details == ("value_type: None -> 'Int64'",)
    assert p.render().splitlines()[1:3] == ["  ! recreate entity driver", "      value_type: None -> 'Int64'"]


# --- prevent_destroy (DESIGN §8) -------------------------------------------------------------------------


def test_protection_chains_cascade_from_a_service():
    svc = FeatureService(name="driver_svc", features=[V0], prevent_destroy=True)
    chains = protection_chains(state(history((V0, ACTIVE)), objects=(DRIVER, SOURCE, svc)))
    head = "feature service 'driver_svc' has prevent_destroy=True"
    assert chains == {
        (ObjectType.FEATURE_SERVICE, "driver_svc"): (head,),
        (ObjectType.FEATURE_VIEW, "driver_stats"): (head, "feature view 'driver_stats'"),
        (ObjectType.DATA_SOURCE, "driver_stats_source"): (head, "feature view 'driver_stats'",
                                                          "data source 'driver_stats_source'"),
        (ObjectType.ENTITY, "driver"): (head, "feature view 'driver_stats'", "entity 'driver'"),
    }


def test_protection_chains_keep_the_shortest_chain():
    protected_view = view(prevent_destroy=True)
    protected_entity = Entity(name="driver", join_keys=["driver_id"], prevent_destroy=True)
    svc = FeatureService(name="driver_svc", features=[protected_view], prevent_destroy=True)
    chains = protection_chains(state(history((protected_view, ACTIVE)), objects=(protected_entity, SOURCE, svc)))
    own = "feature view 'driver_stats' has prevent_destroy=True"
    assert chains[(ObjectType.FEATURE_VIEW, "driver_stats")] == (own,)
    assert chains[(ObjectType.DATA_SOURCE, "driver_stats_source")] == (
        "feature view 'driver_stats' has prevent_destroy=True", "data source 'driver_stats_source'")
    assert chains[(ObjectType.ENTITY, "driver")] == ("entity 'driver' has prevent_destroy=True",)


def test_nothing_protected_means_no_chains():
    assert protection_chains(state(history((V0, ACTIVE)))) == {}
    assert protection_chains(EMPTY) == {}


def test_deleting_a_protected_service_fails_with_its_chain():
    svc = FeatureService(name="driver_svc", features=[V0], prevent_destroy=True)
    with pytest.raises(PreventDestroyError) as err:
        plan(state(history((V0, ACTIVE)), objects=(DRIVER, SOURCE, svc)), collect([V0]))
    assert str(err.value).startswith(
        "Refusing to delete feature service 'driver_svc': it is protected by prevent_destroy (feature service "
        "'driver_svc' has prevent_destroy=True). To change it, first set prevent_destroy=False"
    )
    assert (err.value.object_type, err.value.action) == ("feature service", "delete")


def test_recreating_a_protected_source_fails_with_the_cascade():
    svc = FeatureService(name="driver_svc", features=[V0], prevent_destroy=True)
    current = state(history((V0, ACTIVE)), objects=(DRIVER, SOURCE, svc))
    with pytest.raises(PreventDestroyError) as err:
        plan(current, collect([FeatureService(name="driver_svc", features=[view(source=MOVED_SOURCE)],
                                              prevent_destroy=True)]))
    assert err.value.chain == ("feature service 'driver_svc' has prevent_destroy=True", "feature view 'driver_stats'",
                               "data source 'driver_stats_source'")
    assert "protected by prevent_destroy (feature service 'driver_svc' has prevent_destroy=True -> feature view " \
           "'driver_stats' -> data source 'driver_stats_source')" in str(err.value)


def test_a_protected_view_cannot_serve_a_new_schema_by_a_plain_apply():
    current = state(history((view(prevent_destroy=True), ACTIVE)))
    with pytest.raises(PreventDestroyError,
                       match=r"^Refusing to serve v1 \(a different schema than the active v0\) by a plain apply for "
                             r"feature view 'driver_stats': it is protected by prevent_destroy \(feature view "
                             r"'driver_stats' has prevent_destroy=True\)"):
        plan(current, collect([view(V1.feature_names, prevent_destroy=True)]))


def test_a_protected_view_stages_under_no_promote():
    current = state(history((view(prevent_destroy=True), ACTIVE)))
    p = plan(current, collect([view(V1.feature_names, prevent_destroy=True)]), PlanOptions(no_promote=True))
    assert (view_change(p).kind, view_change(p).state) == (ChangeKind.NEW_VERSION, STAGED)


def test_protection_has_no_effect_in_a_development_workspace():
    svc = FeatureService(name="driver_svc", features=[V0], prevent_destroy=True)
    p = plan(state(history((V0, ACTIVE)), objects=(DRIVER, SOURCE, svc), live=False), collect([V0]))
    assert kinds(p)[-1] == ("feature_service", "driver_svc", "delete")


# --- render of hand-made changes ------------------------------------------------------------------------


def test_render_symbols():
    changes = (
        Change(ChangeKind.CREATE, ObjectType.ENTITY, "e"),
        Change(ChangeKind.UPDATE_IN_PLACE, ObjectType.DATA_SOURCE, "s"),
        Change(ChangeKind.RECREATE, ObjectType.ENTITY, "e2"),
        Change(ChangeKind.DELETE, ObjectType.FEATURE_SERVICE, "svc"),
        Change(ChangeKind.NEW_VERSION, ObjectType.FEATURE_VIEW, "fv", 2, 3, promote=False, state=STAGED,
               online_table="ws_fv_v3"),
        Change(ChangeKind.PIN, ObjectType.FEATURE_VIEW, "fv2", 1, 0, promote=True, state=ACTIVE),
        Change(ChangeKind.UNCHANGED, ObjectType.FEATURE_VIEW, "fv3", 0, 0, details=("matches staged v1",)),
        Change(ChangeKind.UNCHANGED, ObjectType.ENTITY, "e3"),
    )
    p = Plan(workspace="ws", base_revision=7, options=PlanOptions(), changes=changes)
    assert p.render() == "\n".join([
        f"Plan {p.id} for workspace 'ws' at revision 7",
        "  + create entity e",
        "  ~ update data source s in place",
        "  ! recreate entity e2",
        "  - delete feature service svc",
        "  ^ new version v3 (staged) of feature view fv [table ws_fv_v3]",
        "  @ pin feature view fv2 to v0",
        "  = unchanged feature view fv3 v0",
        "      matches staged v1",
        "  = 1 object(s) unchanged",
    ])
    assert p.render(show_unchanged=True).splitlines()[-1] == "  = unchanged entity e3"
    assert p.summary == {"unchanged": 2, "create": 1, "update_in_place": 1, "new_version": 1, "pin": 1,
                         "recreate": 1, "delete": 1}


# --- known defects (strict xfail: each turns into a failure once the defect is fixed) --------------


def test_one_plan_never_gives_two_views_the_same_online_table():
    # 'driver_stats' v1 and the new view 'driver_stats_v1' (v0) would both be demo_driver_stats_v1.
    with pytest.raises(OnlineTableConflict, match="The online table 'demo_driver_stats_v1' of driver_stats_v1 v0 is "
                                                  "already the table of driver_stats v1"):
        plan(state(history((V0, ACTIVE))), collect([V1, view(name="driver_stats_v1")]))


def test_a_new_view_may_not_take_an_existing_versions_table():
    existing = state(history((V0, ACTIVE), (V1, RETIRED)))
    with pytest.raises(OnlineTableConflict, match="already the table of driver_stats v1"):
        plan(existing, collect([view(name="driver_stats_v1")]), PlanOptions(partial=True))
