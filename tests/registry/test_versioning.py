"""DESIGN §6, one test per row of the versioning table, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from feature_rollout.core.errors import FeatureViewPinConflict, FeatureViewVersionNotFound, InvalidNameError
from feature_rollout.core.plan import ChangeKind
from tests.conftest import dump_registry


def view_row(url: str, name: str = "driver_stats") -> dict:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT active_version, deleted_at FROM feature_views WHERE name = :n"),
                           {"n": name}).mappings().one()
    engine.dispose()
    return dict(row)


def versions(store, name="driver_stats"):
    return [(v["version"], v["state"]) for v in store.list_feature_view_versions(name)]


def the_change(plan, name="driver_stats"):
    [change] = [c for c in plan.changes if c.name == name and c.object_type.value == "feature_view"]
    return change


def test_row1_first_apply_creates_v0_active(store, defs, registry_url):
    result = store.apply([defs.view()])
    assert versions(store) == [("v0", "active")]
    assert view_row(registry_url)["active_version"] == 0
    assert result.created_versions == (("driver_stats", 0, "demo_driver_stats"),)
    assert the_change(result.plan).kind is ChangeKind.CREATE


def test_row2_reapply_unchanged_is_a_noop(store, defs, registry_url):
    store.apply([defs.view()])
    before = dump_registry(registry_url)
    plan = store.plan([defs.view()])
    assert the_change(plan).kind is ChangeKind.UNCHANGED
    assert not plan.has_changes
    assert "No changes to apply" in plan.render()
    result = store.apply([defs.view()])
    assert result.applied is False
    after = dump_registry(registry_url)
    # Only the stored plans differ (a plan is stored when made); nothing else moved.
    assert {k: v for k, v in after.items() if k != "plans"} == {k: v for k, v in before.items() if k != "plans"}
    assert versions(store) == [("v0", "active")]


def test_row3_metadata_only_updates_in_place(store, defs):
    store.apply([defs.view()])
    result = store.apply([defs.view(description="Hourly driver stats", tags={"team": "rides"})])
    assert the_change(result.plan).kind is ChangeKind.UPDATE_IN_PLACE
    assert versions(store) == [("v0", "active")]
    view = store.get_feature_view("driver_stats")
    assert (view.description, view.tags) == ("Hourly driver stats", {"team": "rides"})


def test_row4_schema_change_creates_next_version_active(store, defs, registry_url):
    store.apply([defs.view()])
    result = store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"))])
    change = the_change(result.plan)
    assert (change.kind, change.from_version, change.to_version) == (ChangeKind.NEW_VERSION, 0, 1)
    assert versions(store) == [("v0", "retired"), ("v1", "active")]
    assert view_row(registry_url)["active_version"] == 1
    assert store.get_feature_view("driver_stats").feature_names == ["conv_rate", "trips_today", "acc_rate"]
    assert "+ feature acc_rate: Float32" in result.plan.render()


def test_row5_schema_equal_to_an_existing_snapshot_reuses_it(store, defs, registry_url):
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"))])
    result = store.apply([defs.view()])  # back to v0's schema
    change = the_change(result.plan)
    assert (change.kind, change.to_version) == (ChangeKind.REUSE_VERSION, 0)
    assert versions(store) == [("v0", "active"), ("v1", "retired")]
    assert view_row(registry_url)["active_version"] == 0


def test_row5_reuse_under_no_promote_keeps_it_staged(store, defs, registry_url):
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"))])
    result = store.apply([defs.view()], no_promote=True)
    change = the_change(result.plan)
    assert (change.kind, change.to_version, change.promote) == (ChangeKind.REUSE_VERSION, 0, False)
    assert versions(store) == [("v0", "staged"), ("v1", "active")]
    assert view_row(registry_url)["active_version"] == 1


def test_row6_no_promote_stages_and_never_writes_the_active_pointer(store, defs, registry_url):
    store.apply([defs.view()])
    result = store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"))], no_promote=True)
    assert versions(store) == [("v0", "active"), ("v1", "staged")]
    assert view_row(registry_url)["active_version"] == 0
    assert store.get_feature_view("driver_stats").feature_names == ["conv_rate", "trips_today"]
    assert result.created_versions == (("driver_stats", 1, "demo_driver_stats_v1"),)
    assert result.promoted == ()
    assert "^ new version v1 (staged)" in result.plan.render()


def test_row7_plain_apply_after_staging_promotes_the_staged_version(store, defs, registry_url):
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"))], no_promote=True)
    result = store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"))])
    change = the_change(result.plan)
    assert (change.kind, change.to_version) == (ChangeKind.PROMOTE_STAGED, 1)
    assert versions(store) == [("v0", "retired"), ("v1", "active")]  # never a duplicate v2
    assert view_row(registry_url)["active_version"] == 1


def test_row8_pin_by_changing_only_the_version_field(store, defs, registry_url):
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"))])
    before = versions(store)
    result = store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"), version="v0")])
    change = the_change(result.plan)
    assert (change.kind, change.from_version, change.to_version) == (ChangeKind.PIN, 1, 0)
    assert view_row(registry_url)["active_version"] == 0
    assert [v for v, _ in versions(store)] == [v for v, _ in before]  # history untouched
    assert store.get_feature_view("driver_stats").feature_names == ["conv_rate", "trips_today"]
    assert store.history("driver_stats")[0]["kind"] == "pin"
    # Re-applying the same pinned definition is a no-op, not a conflict.
    again = store.plan([defs.view(("conv_rate", "trips_today", "acc_rate"), version="v0")])
    assert the_change(again).kind is ChangeKind.UNCHANGED


def test_row8_pin_with_the_snapshot_definition(store, defs, registry_url):
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"))])
    result = store.apply([defs.view(version="version0")])  # v0's own definition, pinned
    assert the_change(result.plan).kind is ChangeKind.PIN
    assert view_row(registry_url)["active_version"] == 0


def test_row9_pin_with_a_different_definition_conflicts(store, defs, registry_url):
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"))])
    before = dump_registry(registry_url)
    with pytest.raises(FeatureViewPinConflict, match="change only the version field"):
        store.apply([defs.view(("conv_rate", "city"), version="v0")])
    with pytest.raises(FeatureViewPinConflict):
        store.plan([defs.view(("conv_rate", "city"), version="v0")])
    assert dump_registry(registry_url) == before


def test_row10_forward_declaration_of_the_next_version(store, defs):
    store.apply([defs.view()])
    result = store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"), version="v1")])
    change = the_change(result.plan)
    assert (change.kind, change.to_version) == (ChangeKind.NEW_VERSION, 1)
    assert "forward declaration of v1" in change.details
    assert versions(store) == [("v0", "retired"), ("v1", "active")]


def test_row11_pin_to_a_missing_version_that_is_not_next(store, defs, registry_url):
    store.apply([defs.view()])
    before = dump_registry(registry_url)
    with pytest.raises(FeatureViewVersionNotFound, match=r"no version v5; existing versions: v0\. .*next one \(v1\)"):
        store.apply([defs.view(("conv_rate", "acc_rate"), version="v5")])
    assert dump_registry(registry_url) == before


def test_row12_latest_after_a_pin_lets_the_definition_win(store, defs, registry_url):
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"))])
    store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"), version="v0")])
    assert view_row(registry_url)["active_version"] == 0
    # Back to "latest" with the v1 definition: reuse v1 rather than a duplicate.
    result = store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"))])
    assert (the_change(result.plan).kind, the_change(result.plan).to_version) == (ChangeKind.REUSE_VERSION, 1)
    # "latest" with a definition no snapshot has: a new version.
    result = store.apply([defs.view(("conv_rate", "city"))])
    assert (the_change(result.plan).kind, the_change(result.plan).to_version) == (ChangeKind.NEW_VERSION, 2)
    assert [v for v, _ in versions(store)] == ["v0", "v1", "v2"]


def test_row13_reading_a_missing_version_names_the_existing_ones(store, defs):
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate", "acc_rate"))])
    with pytest.raises(FeatureViewVersionNotFound, match=r"has no version v7; existing versions: v0, v1"):
        store.get_feature_view("driver_stats", "v7")
    assert store.get_feature_view("driver_stats", "v0").feature_names == ["conv_rate", "trips_today"]
    assert store.get_feature_view("driver_stats", 1).current_version_number == 1


@pytest.mark.parametrize("bad", ["driver@stats", "driver:stats"])
def test_row14_reserved_characters_are_rejected_at_definition(defs, bad):
    with pytest.raises(InvalidNameError, match="reserved for references"):
        defs.view(name=bad)


def test_row14_reserved_characters_are_rejected_at_apply(store, registry_url, tmp_path):
    from feature_rollout.store import FeatureStore

    (tmp_path / "defs.py").write_text(
        "from feature_rollout import Entity\nbad = Entity(name='driver@v1', join_keys=['driver_id'])\n")
    store.apply([])  # creates the workspace
    before = dump_registry(registry_url)
    repo_store = FeatureStore(tmp_path, config={"project": "demo", "registry": registry_url})
    with pytest.raises(InvalidNameError, match=r"defs.py: .*'driver@v1' contains '@'"):
        repo_store.apply()
    assert dump_registry(registry_url) == before


def test_online_table_names_follow_feast(store_factory, defs):
    store = store_factory(project="prod")
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate",))], no_promote=True)
    store.apply([defs.view(("acc_rate",))], no_promote=True)
    tables = [v["online_table"] for v in store.list_feature_view_versions("driver_stats")]
    assert tables == ["prod_driver_stats", "prod_driver_stats_v1", "prod_driver_stats_v2"]


def test_list_feature_view_versions_has_the_documented_keys(store, defs):
    store.apply([defs.view()])
    [entry] = store.list_feature_view_versions("driver_stats")
    assert {"version", "version_number", "feature_view_name", "created_timestamp", "version_id", "state",
            "schema_hash"} <= set(entry)
    assert (entry["version"], entry["version_number"], entry["feature_view_name"], entry["state"]) == (
        "v0", 0, "driver_stats", "active")
    assert entry["created_timestamp"].tzinfo is not None
    assert len(entry["schema_hash"]) == 64 and len(entry["version_id"]) == 36


def test_in_place_update_keeps_the_active_version(store, defs, registry_url):
    """Feast defect (§17): the active version fell back to v0 after an in-place update."""
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate", "acc_rate"))])
    store.apply([defs.view(("conv_rate", "acc_rate"), description="changed")])
    assert view_row(registry_url)["active_version"] == 1
    assert store.get_feature_view("driver_stats").current_version_number == 1


def test_deleting_a_view_keeps_its_history(store, defs, registry_url):
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate", "acc_rate"))])
    result = store.apply([defs.driver, defs.source], partial=False)
    assert [c.kind for c in result.plan.changes if c.name == "driver_stats"] == [ChangeKind.DELETE]
    row = view_row(registry_url)
    assert row["active_version"] is None and row["deleted_at"] is not None
    assert [v for v, _ in versions(store)] == ["v0", "v1"]
    assert store.list_feature_views() == []
    # Defining it again reuses the matching snapshot: history continues, no duplicate.
    result = store.apply([defs.view()])
    assert (the_change(result.plan).kind, the_change(result.plan).to_version) == (ChangeKind.REUSE_VERSION, 0)
    assert view_row(registry_url) == {"active_version": 0, "deleted_at": None}


def test_no_promote_does_not_rewrite_feature_services(store, defs):
    """Feast defect (§17): --no-promote rewrote services to include the unpromoted fields."""
    view = defs.view()
    store.apply([view, defs.service(view)])
    staged = defs.view(("conv_rate", "trips_today", "acc_rate"))
    store.apply([staged, defs.service(staged)], no_promote=True)
    service = store.get_feature_service("driver_svc")
    assert [(p.view_name, p.version, p.features) for p in service.projections] == [("driver_stats", None, None)]
    assert store.get_feature_view("driver_stats").feature_names == ["conv_rate", "trips_today"]


def test_reordering_fields_is_not_a_new_version(store, defs):
    store.apply([defs.view(("conv_rate", "trips_today"))])
    plan = store.plan([defs.view(("trips_today", "conv_rate"))])
    assert the_change(plan).kind is ChangeKind.UNCHANGED


def test_source_change_is_a_new_version_with_the_same_served_schema(store, defs):
    from feature_rollout.core.definitions import FileSource

    store.apply([defs.view()])
    moved = FileSource(name="driver_stats_source", path="data/v2/driver_stats.parquet",
                       created_timestamp_column="created")
    result = store.apply([defs.view(source=moved)])
    change = the_change(result.plan)
    assert (change.kind, change.serving.value) == (ChangeKind.NEW_VERSION, "new_table")
    assert "~ source path: 'data/driver_stats.parquet' -> 'data/v2/driver_stats.parquet'" in change.details
    assert store.get_feature_view("driver_stats", "v1").source.path == "data/v2/driver_stats.parquet"
    assert store.get_feature_view("driver_stats", "v0").source.path == "data/driver_stats.parquet"


def test_staging_a_wider_schema_leaves_the_active_metadata_alone(store, defs):
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate", "trips_today", "acc_rate"))], no_promote=True)
    assert not store.plan([defs.view()]).has_changes


def test_field_descriptions_are_in_place_metadata(store, defs):
    from feature_rollout.core.definitions import FeatureView, Field
    from feature_rollout.core.types import Float32, Int64

    def view(doc: str) -> FeatureView:
        return FeatureView(name="driver_stats", entities=[defs.driver], source=defs.source,
                           schema=[Field(name="driver_id", dtype=Int64),
                                   Field(name="conv_rate", dtype=Float32, description=doc)])

    store.apply([view("")])
    result = store.apply([view("share of offers accepted")])
    [change] = [c for c in result.plan.changes if c.name == "driver_stats"]
    assert change.kind is ChangeKind.UPDATE_IN_PLACE
    assert "~ field descriptions/tags: conv_rate" in change.details
    assert versions(store) == [("v0", "active")]
    assert store.get_feature_view("driver_stats").features[0].description == "share of offers accepted"
