"""One change detector: what moves ``schema_hash``, ``metadata_hash`` and ``served_hash`` (DESIGN §6)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_rollout.core.definitions import Entity, FeatureService, FeatureView, Field, FileSource
from feature_rollout.core.fingerprint import (
    Fingerprint,
    canonical_json,
    digest,
    entity_fingerprint,
    service_fingerprint,
    source_fingerprint,
    view_fingerprint,
    view_metadata,
)
from feature_rollout.core.plan import resolve_view
from feature_rollout.core.types import Float32, Float64, Int32, Int64, String
from tests.core.builders import DRIVER, SOURCE, resolved, view


def fingerprint(fv: FeatureView) -> Fingerprint:
    return view_fingerprint(resolved(fv))


BASE = fingerprint(view())


def moved(fv: FeatureView) -> tuple[bool, bool, bool]:
    """Which of (schema, metadata, served) hashes differ from the base driver_stats view."""
    fp = fingerprint(fv)
    return (fp.schema_hash != BASE.schema_hash, fp.metadata_hash != BASE.metadata_hash,
            fp.served_hash != BASE.served_hash)


def source(**kwargs: object) -> FileSource:
    args = {"name": "driver_stats_source", "path": "data/driver_stats.parquet", "created_timestamp_column": "created",
            **kwargs}
    return FileSource(**args)  # type: ignore[arg-type]


# --- canonical JSON -----------------------------------------------------------------------------------


def test_canonical_json_is_compact_sorted_and_keeps_unicode():
    assert canonical_json({"b": [1, {"z": 1, "a": 2}], "a": "é"}) == '{"a":"é","b":[1,{"a":2,"z":1}]}'


def test_canonical_json_falls_back_to_str():
    assert canonical_json({"t": timedelta(seconds=1)}) == '{"t":"0:00:01"}'


def test_digest_is_sha256_of_canonical_json():
    assert digest({"b": 1, "a": 2}) == hashlib.sha256(b'{"a":2,"b":1}').hexdigest()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6), st.randoms(use_true_random=False))
def test_canonical_json_does_not_depend_on_key_order(mapping, rnd):
    items = list(mapping.items())
    rnd.shuffle(items)
    assert canonical_json(dict(items)) == canonical_json(mapping)
    assert digest(dict(items)) == digest(mapping)


# --- feature views ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("label", "fv"), [
    ("feature added", view(("conv_rate", "trips_today", "acc_rate"))),
    ("feature removed", view(("conv_rate",))),
    ("feature renamed", view(("conv_rate", "trips_total"), dtypes={"trips_total": Int64})),
    ("feature type", view(dtypes={"conv_rate": Float64})),
    ("join key type", FeatureView(name="driver_stats", entities=[DRIVER], source=SOURCE, ttl=timedelta(days=1),
                                  schema=[Field(name="driver_id", dtype=Int32), Field(name="conv_rate", dtype=Float32),
                                          Field(name="trips_today", dtype=Int64)])),
    ("join key name", view(entity=Entity(name="driver", join_keys=["driver"]))),
])
def test_served_changes_move_schema_and_served_hashes(label, fv):
    schema, _, served = moved(fv)
    assert (schema, served) == (True, True), label


@pytest.mark.parametrize(("label", "fv"), [
    ("source path", view(source=source(path="data/driver_stats_v2.parquet"))),
    ("source timestamp_field", view(source=source(timestamp_field="ts"))),
    ("source created column", view(source=source(created_timestamp_column="created_at"))),
    ("source without created column", view(source=source(created_timestamp_column=None))),
    ("source field_mapping", view(source=source(field_mapping={"cr": "conv_rate"}))),
    ("entity name", view(entity=Entity(name="chauffeur", join_keys=["driver_id"]))),
])
def test_where_the_data_comes_from_moves_schema_hash_only(label, fv):
    assert moved(fv) == (True, False, False), label


@pytest.mark.parametrize(("label", "fv"), [
    ("description", view(description="Hourly driver stats")),
    ("tags", view(tags={"team": "rides"})),
    ("owner", view(owner="rides@corp")),
    ("ttl", view(ttl=timedelta(days=2))),
    ("no ttl", view(ttl=None)),
    ("online", view(online=False)),
    ("prevent_destroy", view(prevent_destroy=True)),
    ("field description", FeatureView(name="driver_stats", entities=[DRIVER], source=SOURCE, ttl=timedelta(days=1),
                                      schema=[Field(name="driver_id", dtype=Int64),
                                              Field(name="conv_rate", dtype=Float32, description="rate"),
                                              Field(name="trips_today", dtype=Int64)])),
])
def test_metadata_changes_move_metadata_hash_only(label, fv):
    assert moved(fv) == (False, True, False), label


@pytest.mark.parametrize(("label", "fv"), [
    ("same definition", view()),
    ("field order", view(("trips_today", "conv_rate"))),
    ("pinned version", view(version="v3")),
    ("source description", view(source=source(description="raw stats", owner="x", tags={"a": "b"}))),
    ("source renamed", view(source=source(name="stats"))),
    ("entity metadata", view(entity=Entity(name="driver", join_keys=["driver_id"], description="x"))),
])
def test_changes_that_move_no_hash(label, fv):
    assert moved(fv) == (False, False, False), label


def test_feature_rename_moves_all_three_hashes():
    # A field's documentation is keyed by its name, so a rename is also a metadata change.
    assert moved(view(("conv_rate", "trips_total"), dtypes={"trips_total": Int64})) == (True, True, True)


def test_served_hash_ignores_the_source_path_but_not_features():
    moved_data = fingerprint(view(source=source(path="s3://bucket/driver_stats.parquet")))
    assert moved_data.served_hash == BASE.served_hash
    assert moved_data.schema_hash != BASE.schema_hash
    assert fingerprint(view(("conv_rate",))).served_hash != BASE.served_hash


def test_hashes_are_sha256_hex():
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in (BASE.schema_hash, BASE.metadata_hash, BASE.served_hash))
    assert len({BASE.schema_hash, BASE.metadata_hash, BASE.served_hash}) == 3


@settings(max_examples=50, deadline=None)
@given(st.permutations(["conv_rate", "trips_today", "acc_rate", "avg_daily_trips", "city"]))
def test_field_order_is_not_significant(features):
    assert fingerprint(view(features)) == fingerprint(view(sorted(features)))


def test_resolve_view_uses_entity_value_type_when_the_schema_does_not_declare_the_key():
    typed = Entity(name="driver", join_keys=["driver_id"], value_type=Int64)
    fv = FeatureView(name="driver_stats", entities=["driver"], source=SOURCE,
                     schema=[Field(name="conv_rate", dtype=Float32)])
    spec = resolve_view(fv.to_spec(), SOURCE.to_spec(), {"driver": typed.to_spec()})
    assert spec["join_keys"] == [{"name": "driver_id", "dtype": "Int64", "entity": "driver"}]
    assert "version" not in spec
    assert spec["source_spec"] == SOURCE.to_spec()


def test_resolve_view_moves_a_key_declared_among_features_to_entity_columns():
    fv = FeatureView(name="driver_stats", entities=["driver"], source=SOURCE,
                     schema=[Field(name="driver_id", dtype=String), Field(name="conv_rate", dtype=Float32)])
    spec = resolve_view(fv.to_spec(), SOURCE.to_spec(), {"driver": DRIVER.to_spec()})
    assert [f["name"] for f in spec["features"]] == ["conv_rate"]
    assert [f["name"] for f in spec["entity_columns"]] == ["driver_id"]
    assert spec["join_keys"] == [{"name": "driver_id", "dtype": "String", "entity": "driver"}]
    # Declaring the key by name or through the Entity object gives the same fingerprint.
    by_object = FeatureView(name="driver_stats", entities=[DRIVER], source=SOURCE,
                            schema=[Field(name="driver_id", dtype=String), Field(name="conv_rate", dtype=Float32)])
    assert view_fingerprint(spec) == fingerprint(by_object)


def test_view_metadata_is_the_unversioned_part():
    spec = resolved(view(description="d", owner="o", tags={"t": "1"}))
    assert view_metadata(spec) == {"description": "d", "tags": {"t": "1"}, "owner": "o", "ttl_seconds": 86400,
                                   "online": True, "prevent_destroy": False, "fields": {}}


def test_view_metadata_keeps_field_docs_where_set_merged_over_the_previous_ones():
    documented = FeatureView(name="driver_stats", entities=[DRIVER], source=SOURCE,
                             schema=[Field(name="driver_id", dtype=Int64),
                                     Field(name="conv_rate", dtype=Float32, description="rate"),
                                     Field(name="trips_today", dtype=Int64, tags={"unit": "trips"})])
    docs = view_metadata(resolved(documented))["fields"]
    assert docs == {"conv_rate": {"description": "rate", "tags": {}},
                    "trips_today": {"description": "", "tags": {"unit": "trips"}}}
    previous = {"fields": {**docs, "acc_rate": {"description": "staged", "tags": {}}}}
    # conv_rate is declared without docs now (dropped); acc_rate is not in this spec (kept).
    assert view_metadata(resolved(view()), previous)["fields"] == {
        "acc_rate": {"description": "staged", "tags": {}},
    }
    assert list(view_metadata(resolved(documented), previous)["fields"]) == ["acc_rate", "conv_rate", "trips_today"]


# --- entities, sources, services -----------------------------------------------------------------------


def test_entity_fingerprint():
    base = entity_fingerprint(DRIVER.to_spec())
    assert base.schema_hash == base.served_hash
    described = entity_fingerprint(Entity(name="driver", join_keys=["driver_id"], description="x", owner="o",
                                          tags={"a": "b"}, prevent_destroy=True).to_spec())
    assert (described.schema_hash, described.metadata_hash != base.metadata_hash) == (base.schema_hash, True)
    for other in (Entity(name="driver", join_keys=["id"]), Entity(name="driver", join_keys=["driver_id"],
                                                                   value_type=Int64)):
        fp = entity_fingerprint(other.to_spec())
        assert (fp.schema_hash != base.schema_hash, fp.metadata_hash) == (True, base.metadata_hash)
    # The name is the registry key, not part of the identity.
    assert entity_fingerprint(Entity(name="chauffeur", join_keys=["driver_id"]).to_spec()) == base


def test_source_fingerprint():
    base = source_fingerprint(SOURCE.to_spec())
    moved_data = source_fingerprint(source(path="s3://b/driver_stats.parquet").to_spec())
    assert moved_data.schema_hash != base.schema_hash
    assert (moved_data.served_hash, moved_data.metadata_hash) == (base.served_hash, base.metadata_hash)
    new_columns = source_fingerprint(source(timestamp_field="ts").to_spec())
    assert (new_columns.schema_hash != base.schema_hash, new_columns.served_hash != base.served_hash) == (True, True)
    described = source_fingerprint(source(description="x", prevent_destroy=True).to_spec())
    assert (described.schema_hash, described.served_hash) == (base.schema_hash, base.served_hash)
    assert described.metadata_hash != base.metadata_hash


def test_service_fingerprint_ignores_order():
    fv, other = view(("conv_rate", "trips_today")), view(("city",), name="driver_city")
    a = FeatureService(name="svc", features=[fv[["conv_rate", "trips_today"]], other, "driver_stats@v1:conv_rate"])
    b = FeatureService(name="svc", features=["driver_stats@v1:conv_rate", other, fv[["trips_today", "conv_rate"]]])
    assert service_fingerprint(a.to_spec()) == service_fingerprint(b.to_spec())
    assert service_fingerprint(a.to_spec()).schema_hash == service_fingerprint(a.to_spec()).served_hash


def test_service_fingerprint_separates_versions_and_features():
    fv = view(("conv_rate", "trips_today"))
    base = service_fingerprint(FeatureService(name="svc", features=[fv]).to_spec())
    variants = [
        FeatureService(name="svc", features=[fv[["conv_rate"]]]),
        FeatureService(name="svc", features=["driver_stats@v0:conv_rate", "driver_stats@v0:trips_today"]),
        FeatureService(name="svc", features=["driver_stats:conv_rate", "driver_stats:trips_today"]),
    ]
    hashes = {base.schema_hash} | {service_fingerprint(s.to_spec()).schema_hash for s in variants}
    assert len(hashes) == 4
    described = service_fingerprint(FeatureService(name="svc", features=[fv], description="d").to_spec())
    assert (described.schema_hash, described.metadata_hash != base.metadata_hash) == (base.schema_hash, True)
