"""DESIGN §8: prevent_destroy with its cascade, the two-step removal, live and development workspaces."""

from __future__ import annotations

import pytest

from feature_rollout.core.definitions import Entity, FileSource
from feature_rollout.core.errors import InvalidNameError, PreventDestroyError, WorkspaceExists, WorkspaceNotFound
from tests.conftest import dump_registry

MOVED = dict(name="driver_stats_source", path="data/moved.parquet", created_timestamp_column="created")


def test_a_protected_view_cannot_be_deleted(store, defs, registry_url):
    store.apply([defs.view(prevent_destroy=True)])
    before = dump_registry(registry_url)
    with pytest.raises(PreventDestroyError) as info:
        store.apply([defs.driver, defs.source], partial=False)
    assert "Refusing to delete feature view 'driver_stats'" in str(info.value)
    assert info.value.chain == ("feature view 'driver_stats' has prevent_destroy=True",)
    assert info.value.exit_code == 1
    assert dump_registry(registry_url) == before


def test_protection_cascades_from_a_service_to_its_views_sources_and_entities(store, defs, registry_url):
    view = defs.view()
    store.apply([view, defs.service(view, prevent_destroy=True)])
    before = dump_registry(registry_url)
    chain_head = "feature service 'driver_svc' has prevent_destroy=True"
    with pytest.raises(PreventDestroyError) as info:
        store.apply([defs.driver, defs.source], partial=False)
    assert (info.value.object_type, info.value.name) == ("feature service", "driver_svc")
    with pytest.raises(PreventDestroyError) as info:
        moved = defs.view(source=FileSource(**MOVED))
        store.apply([moved, defs.service(moved, prevent_destroy=True)])
    assert (info.value.object_type, info.value.action) == ("data source", "recreate")
    assert info.value.chain == (chain_head, "feature view 'driver_stats'", "data source 'driver_stats_source'")
    assert "feature view 'driver_stats' -> data source 'driver_stats_source'" in str(info.value)
    with pytest.raises(PreventDestroyError) as info:
        store.apply([defs.view(entity=Entity(name="driver", join_keys=["driver_uuid"]))])
    assert (info.value.object_type, info.value.name, info.value.action) == ("entity", "driver", "recreate")
    assert dump_registry(registry_url) == before


def test_a_protected_view_changes_its_schema_only_through_staging(store, defs, registry_url):
    store.apply([defs.view(prevent_destroy=True)])
    before = dump_registry(registry_url)
    wider = defs.view(("conv_rate", "trips_today", "acc_rate"), prevent_destroy=True)
    with pytest.raises(PreventDestroyError, match=r"serve v1 \(a different schema than the active v0\) by a plain "
                                                  "apply for feature view 'driver_stats'"):
        store.apply([wider])
    assert dump_registry(registry_url) == before
    store.apply([wider], no_promote=True)  # staging is allowed
    with pytest.raises(PreventDestroyError, match="by a plain apply"):
        store.apply([wider])  # ... but a plain apply may not promote it
    with pytest.raises(PreventDestroyError, match=r"promote v1 \(a different schema"):
        store.promote("driver_stats", "v1", require_gates=False)
    assert store.get_feature_view("driver_stats").current_version_number == 0


def test_a_protected_view_moves_its_source_by_staging_then_promoting(store, defs, registry_url):
    store.apply([defs.view(prevent_destroy=True)])
    moved = defs.view(prevent_destroy=True, source=FileSource(**MOVED))
    before = dump_registry(registry_url)
    with pytest.raises(PreventDestroyError, match="Refusing to recreate data source 'driver_stats_source'"):
        store.apply([moved])
    assert dump_registry(registry_url) == before
    result = store.apply([moved], no_promote=True)
    assert result.created_versions == (("driver_stats", 1, "demo_driver_stats_v1"),) and result.promoted == ()
    # The active version keeps reading its own snapshot of the source.
    assert store.get_feature_view("driver_stats").source.path == "data/driver_stats.parquet"
    # Same served schema: the promotion is allowed.
    assert store.promote("driver_stats", "v1", require_gates=False).to_version == 1
    assert store.get_feature_view("driver_stats").source.path == "data/moved.parquet"


def test_pins_and_reuses_of_a_protected_view_must_keep_its_schema(store, defs):
    store.apply([defs.view()])
    store.apply([defs.view(("conv_rate",))])
    store.apply([defs.view(("conv_rate",), prevent_destroy=True)])
    with pytest.raises(PreventDestroyError, match="by a pin for"):
        store.apply([defs.view(("conv_rate",), prevent_destroy=True, version="v0")])
    with pytest.raises(PreventDestroyError, match="by a reuse of a snapshot for"):
        store.apply([defs.view(prevent_destroy=True)])


def test_two_step_removal(store, defs, registry_url):
    store.apply([defs.view(prevent_destroy=True)])
    before = dump_registry(registry_url)
    # One step (turn protection off and delete in the same apply) is refused: protection is read from the registry.
    with pytest.raises(PreventDestroyError):
        store.apply([defs.driver, defs.source], objects_to_delete=[defs.view(prevent_destroy=False)])
    assert dump_registry(registry_url) == before
    result = store.apply([defs.view(prevent_destroy=False)])
    assert [c.kind.value for c in result.plan.changes if c.name == "driver_stats"] == ["update_in_place"]
    store.apply([defs.driver, defs.source], partial=False)
    assert store.list_feature_views() == []


def test_development_workspaces_ignore_prevent_destroy(store_factory, defs):
    store_factory().create_workspace("dev", live=False)
    dev = store_factory("dev")
    view = defs.view(prevent_destroy=True)
    dev.apply([view, defs.service(view, prevent_destroy=True)])
    dev.apply([defs.view(("conv_rate", "acc_rate"), prevent_destroy=True)], objects_to_delete=[defs.service(view)])
    dev.apply([defs.driver, defs.source], partial=False)
    assert dev.list_feature_views() == []


def test_workspaces(store_factory, defs):
    prod = store_factory()
    prod.apply([defs.view()])
    prod.create_workspace("staging")
    prod.create_workspace("canary", live=True)
    listed = {w["name"]: (w["live"], w["revision"], w["feature_views"]) for w in prod.list_workspaces()}
    assert listed == {"demo": (True, 1, 1), "staging": (False, 0, 0), "canary": (True, 0, 0)}
    with pytest.raises(WorkspaceExists, match="'staging' already exists"):
        prod.create_workspace("staging")
    with pytest.raises(InvalidNameError):
        prod.create_workspace("bad-name")
    with pytest.raises(WorkspaceNotFound, match="workspace create nope"):
        store_factory("nope").plan([defs.view()])
    with pytest.raises(WorkspaceNotFound):
        store_factory("nope").apply([defs.view()])
    staging = store_factory("staging")
    staging.apply([defs.view(("conv_rate", "acc_rate"))])
    assert staging.list_feature_view_versions("driver_stats")[0]["online_table"] == "staging_driver_stats"
    assert prod.get_feature_view("driver_stats").feature_names == ["conv_rate", "trips_today"]
    assert staging.get_feature_view("driver_stats").feature_names == ["conv_rate", "acc_rate"]


def test_suppress_recreates_may_not_rewrite_a_protected_object_in_place(store, defs, registry_url):
    store.apply([defs.view(prevent_destroy=True)])
    before = dump_registry(registry_url)
    moved = defs.view(prevent_destroy=True, source=FileSource(**MOVED))
    with pytest.raises(PreventDestroyError, match=r"rewrite in place \(suppress_recreates\)"):
        store.apply([moved], suppress_recreates=True)
    assert dump_registry(registry_url) == before
    # Staged instead, the move is fine: the new source is a staged version's snapshot.
    result = store.apply([moved], suppress_recreates=True, no_promote=True)
    assert result.created_versions == (("driver_stats", 1, "demo_driver_stats_v1"),) and result.promoted == ()
