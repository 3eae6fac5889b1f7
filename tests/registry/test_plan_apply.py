"""DESIGN §7: plan ids, stored plans, exact apply, stale plans, suppress_recreates, dependencies."""

from __future__ import annotations

import json

import pytest

from feature_rollout.core.definitions import Entity, FeatureService, FileSource
from feature_rollout.core.errors import (
    DependencyConflictError,
    FeatureViewVersionNotFound,
    InvalidDefinitionError,
    PlanNotFoundError,
    RecreateNotSuppressible,
    StalePlanError,
    UnknownReferenceError,
)
from feature_rollout.core.plan import ChangeKind, Plan
from tests.conftest import dump_registry


def kinds(plan):
    return {(c.object_type.value, c.name): c.kind.value for c in plan.changes}


def revision(store):
    return store.registry.get_workspace(store.workspace)["revision"]


def test_plan_id_is_a_content_hash(store, defs):
    a = store.plan([defs.view()])
    b = store.plan([defs.view()])
    c = store.plan([defs.view()], no_promote=True)
    assert a.id == b.id and len(a.id) == 16
    assert c.id != a.id
    store.apply([defs.driver])
    assert store.plan([defs.view()]).id != a.id  # the base revision is part of the content


def test_plans_are_stored_and_apply_exactly_the_stored_changes(store, defs):
    plan = store.plan([defs.view()])
    stored = store.registry.get_plan(plan.id)
    assert stored.plan == plan and stored.applied_at is None and stored.rendered == plan.render()
    result = store.apply(plan_id=plan.id)
    assert result.applied and result.plan_id == plan.id and result.revision == 1
    assert store.registry.get_plan(plan.id).applied_revision == 1
    assert [v["version"] for v in store.list_feature_view_versions("driver_stats")] == ["v0"]


def test_apply_by_id_ignores_later_edits_of_the_repo(store_factory, defs, tmp_path):
    store = store_factory()
    (tmp_path / "features.py").write_text(
        "from tests.conftest import Defs\nd = Defs()\nview = d.view()\n", encoding="utf-8")
    plan = store.plan()
    (tmp_path / "features.py").write_text(
        "from tests.conftest import Defs\nd = Defs()\nview = d.view(('conv_rate', 'acc_rate'))\n", encoding="utf-8")
    store.apply(plan_id=plan.id)
    assert store.get_feature_view("driver_stats").feature_names == ["conv_rate", "trips_today"]


def test_stale_plan_is_refused_and_changes_nothing(store, defs, registry_url):
    store.apply([defs.view()])
    stale = store.plan([defs.view(("conv_rate", "acc_rate"))])
    store.apply([defs.view(description="moved the revision")])
    before = dump_registry(registry_url)
    with pytest.raises(StalePlanError, match=r"made at revision 1 of workspace 'demo', which is now at revision 2") \
            as info:
        store.apply(plan_id=stale.id)
    assert info.value.exit_code == 1
    assert "Run `feature-rollout plan` again" in str(info.value)
    assert dump_registry(registry_url) == before


def test_a_plan_applies_once(store, defs, registry_url):
    plan = store.plan([defs.view()])
    store.apply(plan_id=plan.id)
    before = dump_registry(registry_url)
    with pytest.raises(StalePlanError, match="has already been applied"):
        store.apply(plan_id=plan.id)
    assert dump_registry(registry_url) == before


def test_unknown_plan_id(store, defs, registry_url):
    store.apply([defs.view()])
    before = dump_registry(registry_url)
    with pytest.raises(PlanNotFoundError, match="No stored plan with id 'feedfacefeedface'"):
        store.apply(plan_id="feedfacefeedface")
    assert dump_registry(registry_url) == before


def test_a_plan_of_another_workspace_is_not_found_here(store_factory, defs):
    prod = store_factory()
    plan = prod.plan([defs.view()])
    prod.create_workspace("dev")
    with pytest.raises(PlanNotFoundError):
        store_factory("dev").apply(plan_id=plan.id)


def test_options_must_match_the_stored_plan(store, defs):
    plan = store.plan([defs.view()])
    with pytest.raises(InvalidDefinitionError, match="made without no-promote"):
        store.apply(plan_id=plan.id, no_promote=True)
    with pytest.raises(InvalidDefinitionError, match="either plan_id or objects"):
        store.apply([defs.view()], plan_id=plan.id)


def test_noop_apply_keeps_the_revision(store, defs):
    store.apply([defs.view()])
    assert revision(store) == 1
    assert store.apply([defs.view()]).applied is False
    assert revision(store) == 1


def test_to_json_is_stable_and_documented(store, defs):
    store.apply([defs.view()])
    plan = store.plan([defs.view(("conv_rate", "acc_rate"))], no_promote=True)
    data = json.loads(json.dumps(plan.to_json()))
    assert set(data) == {"format_version", "id", "workspace", "base_revision", "options", "has_changes", "summary",
                         "warnings", "changes"}
    assert data["options"] == {"no_promote": True, "suppress_recreates": False, "partial": True}
    [view] = [c for c in data["changes"] if c["object_type"] == "feature_view"]
    assert set(view) == {"kind", "object_type", "name", "from_version", "to_version", "promote", "state", "serving",
                         "materialization", "held", "amend", "updates_metadata", "online_table", "details",
                         "warnings", "schema_hash"}
    assert (view["kind"], view["from_version"], view["to_version"], view["state"], view["serving"]) == (
        "new_version", 0, 1, "staged", "new_table")
    assert view["materialization"] == {"view": "driver_stats", "version": 1, "range": "backfill"}
    assert data["summary"] == {"unchanged": 2, "new_version": 1}
    assert plan.to_json() == store.registry.get_plan(plan.id).plan.to_json()


def test_render_shows_every_kind_of_change(store, defs):
    view = defs.view()
    store.apply([view, defs.service(view)])
    rekeyed = Entity(name="driver", join_keys=["driver_uuid"])
    plan = store.plan([defs.view(("conv_rate",), entity=rekeyed, description="x"),
                       FeatureService(name="other_svc", features=["driver_stats:conv_rate"])],
                      objects_to_delete=[defs.service(view)])
    text = plan.render()
    assert "! recreate entity driver" in text
    assert "^ new version v1 (active) of feature view driver_stats" in text
    assert "~ join keys: driver_id:Int64 -> driver_uuid:Int64" in text
    assert "+ create feature service other_svc" in text
    assert "- delete feature service driver_svc" in text


def test_recreate_kinds(store, defs):
    view = defs.view()
    store.apply([view, defs.service(view)])
    moved = FileSource(name="driver_stats_source", path="data/elsewhere.parquet", created_timestamp_column="created")
    moved_view = defs.view(source=moved)
    plan = store.plan([moved_view, defs.service(moved_view, features=[moved_view[["conv_rate"]]])])
    assert kinds(plan)[("data_source", "driver_stats_source")] == "recreate"
    assert kinds(plan)[("feature_service", "driver_svc")] == "recreate"
    assert kinds(plan)[("feature_view", "driver_stats")] == "new_version"


def test_suppress_recreates_turns_a_move_into_an_in_place_update(store, defs):
    store.apply([defs.view()])
    moved = FileSource(name="driver_stats_source", path="data/elsewhere.parquet", created_timestamp_column="created")
    result = store.apply([defs.view(source=moved)], suppress_recreates=True)
    assert kinds(result.plan)[("data_source", "driver_stats_source")] == "update_in_place"
    [change] = [c for c in result.plan.changes if c.name == "driver_stats"]
    assert (change.kind, change.amend, change.to_version) == (ChangeKind.UPDATE_IN_PLACE, True, 0)
    assert any("NOT re-materialized" in w for w in result.plan.warnings)
    assert "WARNING: suppress_recreates" in result.plan.render()
    assert [v["version"] for v in store.list_feature_view_versions("driver_stats")] == ["v0"]
    assert store.get_feature_view("driver_stats").source.path == "data/elsewhere.parquet"
    assert store.plan([defs.view(source=moved)]).has_changes is False


def test_suppress_recreates_is_refused_where_the_schema_changes(store, defs, registry_url):
    store.apply([defs.view()])
    before = dump_registry(registry_url)
    with pytest.raises(RecreateNotSuppressible, match="feature view 'driver_stats'.*served schema"):
        store.apply([defs.view(("conv_rate", "acc_rate"))], suppress_recreates=True)
    rekeyed = Entity(name="driver", join_keys=["driver_uuid"])
    with pytest.raises(RecreateNotSuppressible, match="entity 'driver'.*join_keys"):
        store.plan([defs.view(entity=rekeyed)], suppress_recreates=True)
    assert dump_registry(registry_url) == before


def test_partial_and_full_desired_states(store, defs):
    other = defs.view(("conv_rate",), name="driver_hourly")
    store.apply([defs.view(), other])
    store.apply([defs.view(description="partial: others stay")])
    assert {v.name for v in store.list_feature_views()} == {"driver_stats", "driver_hourly"}
    store.apply([defs.driver], objects_to_delete=[other])
    assert {v.name for v in store.list_feature_views()} == {"driver_stats"}
    store.apply([defs.driver, defs.source], partial=False)
    assert store.list_feature_views() == []


def test_deleting_what_a_view_still_uses_is_refused(store, defs, registry_url):
    store.apply([defs.view()])
    before = dump_registry(registry_url)
    with pytest.raises(DependencyConflictError, match="Cannot delete entity 'driver': feature view 'driver_stats'"):
        store.apply([defs.view()], objects_to_delete=[defs.driver])
    with pytest.raises(DependencyConflictError, match="Cannot delete data source 'driver_stats_source'"):
        store.apply([defs.view()], objects_to_delete=[defs.source])
    assert dump_registry(registry_url) == before


def test_services_must_resolve_after_the_apply(store, defs, registry_url):
    view = defs.view()
    store.apply([view])
    before = dump_registry(registry_url)
    with pytest.raises(DependencyConflictError, match="uses feature view 'nope', which is not defined"):
        store.apply([FeatureService(name="svc", features=["nope:conv_rate"])])
    with pytest.raises(FeatureViewVersionNotFound, match="has no version v3"):
        store.apply([FeatureService(name="svc", features=["driver_stats@v3:conv_rate"])])
    with pytest.raises(DependencyConflictError, match="uses driver_stats:acc_rate, which the active version v0"):
        store.apply([FeatureService(name="svc", features=["driver_stats:acc_rate"])])
    assert dump_registry(registry_url) == before


def test_a_service_can_pin_an_older_version(store, defs):
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate", "acc_rate"))])
    svc = FeatureService(name="svc", features=["driver_stats@v0:trips_today", defs.view(("conv_rate", "acc_rate"))])
    store.apply([svc])
    projections = store.get_feature_service("svc").projections
    assert [(p.view_name, p.version, p.features) for p in projections] == [
        ("driver_stats", 0, ["trips_today"]), ("driver_stats", None, None)]


def test_a_new_version_that_drops_a_served_feature_is_refused(store, defs, registry_url):
    view = defs.view()
    store.apply([view, defs.service(view, features=[view[["trips_today"]]])])
    before = dump_registry(registry_url)
    with pytest.raises(DependencyConflictError, match="uses driver_stats:trips_today, which the active version v1"):
        store.apply([defs.view(("conv_rate",))])
    assert dump_registry(registry_url) == before
    # Staging it is fine: the service keeps reading the active v0.
    store.apply([defs.view(("conv_rate",))], no_promote=True)


def test_unknown_entity_is_refused(store, defs, registry_url):
    from feature_rollout.core.definitions import FeatureView, Field
    from feature_rollout.core.types import Float32

    store.apply([defs.driver])
    before = dump_registry(registry_url)
    view = FeatureView(name="v", entities=["rider"], source=defs.source, schema=[Field(name="x", dtype=Float32)])
    with pytest.raises(UnknownReferenceError, match="uses entity 'rider', which is not defined"):
        store.apply([view])
    assert dump_registry(registry_url) == before


def test_plan_record_round_trip(store, defs):
    plan = store.plan([defs.view(), defs.service(defs.view())])
    again = Plan.from_record(plan.to_record())
    assert again == plan and again.id == plan.id
    tampered = plan.to_record()
    tampered["changes"][0]["name"] = "other"
    with pytest.raises(ValueError, match="does not match its content"):
        Plan.from_record(tampered)


def test_suppress_recreates_under_no_promote_stages_instead_of_amending(store, defs):
    store.apply([defs.view()])
    moved = FileSource(name="driver_stats_source", path="data/elsewhere.parquet", created_timestamp_column="created")
    result = store.apply([defs.view(source=moved)], suppress_recreates=True, no_promote=True)
    [change] = [c for c in result.plan.changes if c.name == "driver_stats"]
    assert (change.kind, change.amend, change.state.value) == (ChangeKind.NEW_VERSION, False, "staged")
    assert store.get_feature_view("driver_stats").source.path == "data/driver_stats.parquet"


def test_online_table_names_are_unique_across_workspaces(store_factory, defs, registry_url):
    from feature_rollout.core.errors import OnlineTableConflict

    store_factory(project="prod_eu").apply([defs.view(name="d")])
    store_factory(project="prod_eu").create_workspace("prod", live=True)
    before = dump_registry(registry_url)
    with pytest.raises(OnlineTableConflict, match="'prod_eu_d' of eu_d v0 is already the table of d v0 in workspace "
                                                  "'prod_eu'"):
        store_factory("prod", project="prod_eu").apply([defs.view(name="eu_d")])
    assert dump_registry(registry_url) == before


def test_a_new_repo_with_a_service_can_be_staged(store, defs):
    from feature_rollout.core.errors import FeatureViewVersionNotFound

    view = defs.view()
    result = store.apply([view, defs.service(view)], no_promote=True)
    assert result.created_versions == (("driver_stats", 0, "demo_driver_stats"),) and result.promoted == ()
    with pytest.raises(FeatureViewVersionNotFound, match="has no active version yet"):
        store.get_online_features(store.get_feature_service("driver_svc"), [{"driver_id": 1}])
    assert store.apply([view, defs.service(view)]).promoted == (("driver_stats", None, 0),)
