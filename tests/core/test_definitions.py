"""Definition objects validate themselves and turn into specs (DESIGN §3)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from feature_rollout.core.definitions import (
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    Field,
    FileSource,
)
from feature_rollout.core.errors import (
    EmptySchemaError,
    InvalidDefinitionError,
    InvalidNameError,
    InvalidReferenceError,
    InvalidVersionError,
    UnknownReferenceError,
)
from feature_rollout.core.types import Array, Float32, Int64, String, parse_type
from tests.core.builders import DRIVER, SOURCE, view

# --- Entity ---------------------------------------------------------------------------------------


def test_entity_join_keys_default_to_its_name():
    entity = Entity(name="driver")
    assert entity.join_keys == ["driver"]
    assert entity.join_key == "driver"


def test_entity_spec():
    entity = Entity(name="driver", join_keys=["driver_id"], value_type="Int64", description="d",
                    tags={"b": "2", "a": "1"}, owner="rides@corp", prevent_destroy=True)
    assert entity.to_spec() == {"name": "driver", "join_keys": ["driver_id"], "value_type": "Int64",
                                "description": "d", "tags": {"a": "1", "b": "2"}, "owner": "rides@corp",
                                "prevent_destroy": True}
    assert list(entity.to_spec()["tags"]) == ["a", "b"]


def test_join_keys_as_a_string_is_rejected():
    with pytest.raises(InvalidDefinitionError,
                       match=r"^join_keys of entity 'driver' must be a list such as \['driver_id'\], not a string.$"):
        Entity(name="driver", join_keys="driver_id")


def test_duplicate_join_keys_are_rejected():
    with pytest.raises(InvalidDefinitionError, match=r"^entity 'driver' lists a join key twice: \['a', 'b', 'a'\].$"):
        Entity(name="driver", join_keys=["a", "b", "a"])


def test_an_entity_needs_a_join_key():
    with pytest.raises(InvalidDefinitionError, match=r"^entity 'driver' needs at least one join key.$"):
        Entity(name="driver", join_keys=[])


def test_value_type_needs_exactly_one_join_key():
    assert Entity(name="driver", join_keys=["driver_id"], value_type=Int64).value_type == Int64
    with pytest.raises(InvalidDefinitionError, match=r"^value_type of entity 'trip' applies to a single join key"):
        Entity(name="trip", join_keys=["driver_id", "rider_id"], value_type=Int64)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "dri:ver"}, r"^The entity name 'dri:ver' contains ':'"),
    ({"name": "driver", "join_keys": ["driver id"]},
     r"^The join key of entity 'driver' name 'driver id' is not allowed"),
    ({"name": "driver", "tags": {"team": 1}},
     r"^The tags of entity 'driver' must be a mapping of strings to strings.$"),
    ({"name": "driver", "owner": 5}, r"^The owner of entity 'driver' must be a string, got 5.$"),
    ({"name": "driver", "prevent_destroy": "yes"}, r"^prevent_destroy of entity 'driver' must be True or False"),
])
def test_entity_rejects_bad_arguments(kwargs, message):
    with pytest.raises(InvalidDefinitionError, match=message):
        Entity(**kwargs)


# --- Field and types ---------------------------------------------------------------------------------


def test_field_dtype_by_object_or_by_name():
    assert Field(name="x", dtype=Int64).dtype == Int64
    assert Field(name="x", dtype="Int64").dtype is Int64
    assert Field(name="x", dtype="Array(Int64)").dtype == Array(Int64)
    assert Field(name="x", dtype=Array(Float32)).to_spec() == {"name": "x", "dtype": "Array(Float32)",
                                                               "description": "", "tags": {}}
    assert Field(name="x", dtype="Array(Int64)") == Field(name="x", dtype=Array(Int64))


@pytest.mark.parametrize("dtype", ["Decimal", "int64", "Array(Foo)", "Array(Array(Int64))", "Array(Int64", int, None])
def test_unknown_types_are_rejected_with_the_choices(dtype):
    with pytest.raises(InvalidDefinitionError) as err:
        Field(name="x", dtype=dtype)
    assert str(err.value) == (
        f"{dtype!r} is not a feature type; use one of Bool, Bytes, Float32, Float64, Int32, Int64, String, "
        "UnixTimestamp or Array(<one of those>)."
    )


def test_array_takes_a_primitive_type():
    with pytest.raises(InvalidDefinitionError, match=r"^Array\(\) takes a primitive type such as Float32"):
        Array(Array(Int64))  # type: ignore[arg-type]


def test_parse_type_round_trips_names():
    for dtype in (Int64, String, Array(Float32)):
        assert parse_type(str(dtype)) == dtype


def test_field_from_spec_round_trips():
    field = Field(name="conv_rate", dtype=Float32, description="rate", tags={"pii": "no"})
    assert Field.from_spec(field.to_spec()) == field
    assert Field.from_spec(field.to_spec()).to_spec() == field.to_spec()


# --- FileSource ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "name"), [
    ("data/driver_stats.parquet", "driver_stats"),
    ("data/driver-stats.v2.parquet", "driver_stats"),
    ("s3://bucket/stats/", "stats"),
    ("gs://bucket/x/daily stats.parquet", "daily_stats"),
])
def test_source_name_is_derived_from_the_path(path, name):
    assert FileSource(path=path).name == name


@pytest.mark.parametrize("path", ["data/123.parquet", "data/_x.parquet", "data/*.parquet"])
def test_underivable_source_name_asks_for_name(path):
    with pytest.raises(InvalidDefinitionError,
                       match=f"^Cannot derive a data source name from path {re.escape(repr(path))}; "
                             r"pass name= to FileSource.$"):
        FileSource(path=path)
    assert FileSource(path=path, name="stats").name == "stats"


def test_source_timestamp_field_default_and_alias():
    assert FileSource(path="x.parquet").timestamp_field == "event_timestamp"
    assert FileSource(path="x.parquet", event_timestamp_column="ts").timestamp_field == "ts"
    assert FileSource(path="x.parquet", timestamp_field="t1", event_timestamp_column="t2").timestamp_field == "t1"


def test_source_spec():
    source = FileSource(path="data/driver_stats.parquet", created_timestamp_column="created",
                        field_mapping={"b_col": "b", "a_col": "a"})
    assert source.to_spec() == {
        "name": "driver_stats", "type": "file", "path": "data/driver_stats.parquet", "file_format": "parquet",
        "timestamp_field": "event_timestamp", "created_timestamp_column": "created",
        "field_mapping": {"a_col": "a", "b_col": "b"}, "description": "", "tags": {}, "owner": "",
        "prevent_destroy": False,
    }


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"path": "x.csv", "file_format": "csv"}, InvalidDefinitionError,
     r"^data source 'x' uses file_format='csv'; only 'parquet' is supported.$"),
    ({"path": "  "}, InvalidDefinitionError, r"^FileSource needs a non-empty path, got '  '.$"),
    ({"path": None}, InvalidDefinitionError, r"^FileSource needs a non-empty path, got None.$"),
    ({"path": "x.parquet", "timestamp_field": "event-time"}, InvalidNameError,
     r"^The timestamp_field of data source 'x' name 'event-time' is not allowed"),
    ({"path": "x.parquet", "field_mapping": {"a": "b:c"}}, InvalidNameError,
     r"^The field_mapping target of data source 'x' name 'b:c' contains ':'"),
    ({"path": "x.parquet", "field_mapping": {"": "b"}}, InvalidDefinitionError,
     r"^field_mapping of data source 'x' has a bad source column ''.$"),
])
def test_source_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        FileSource(**kwargs)


def test_source_from_spec_round_trips():
    source = FileSource(path="s3://b/driver.parquet", name="drv", timestamp_field="ts",
                        created_timestamp_column="created", field_mapping={"c": "d"}, description="x",
                        tags={"t": "1"}, owner="o", prevent_destroy=True)
    again = FileSource.from_spec(source.to_spec())
    assert again.to_spec() == source.to_spec()
    assert again == source
    assert FileSource.from_spec(SOURCE.to_spec()) == SOURCE


# --- FeatureView ----------------------------------------------------------------------------------------


def test_schema_fields_named_like_a_join_key_are_entity_columns():
    fv = view(("conv_rate", "trips_today"))
    assert [f.name for f in fv.schema] == ["driver_id", "conv_rate", "trips_today"]
    assert fv.feature_names == ["conv_rate", "trips_today"]
    spec = fv.to_spec()
    assert spec["entity_columns"] == [{"name": "driver_id", "dtype": "Int64", "description": "", "tags": {}}]
    assert [f["name"] for f in spec["features"]] == ["conv_rate", "trips_today"]


def test_feature_view_spec():
    fv = view(("conv_rate",), ttl=timedelta(hours=2), online=False, description="d", owner="o", tags={"t": "x"},
              version="Version3", prevent_destroy=True)
    assert fv.to_spec() == {
        "name": "driver_stats", "entities": ["driver"],
        "entity_columns": [{"name": "driver_id", "dtype": "Int64", "description": "", "tags": {}}],
        "features": [{"name": "conv_rate", "dtype": "Float32", "description": "", "tags": {}}],
        "source": "driver_stats_source", "ttl_seconds": 7200, "online": False, "description": "d",
        "tags": {"t": "x"}, "owner": "o", "version": "v3", "prevent_destroy": True,
    }
    assert (fv.version, fv.version_number) == ("v3", 3)


def test_entities_by_name_keep_the_key_among_the_fields():
    fv = FeatureView(name="fv", source=SOURCE, entities=["driver"],
                     schema=[Field(name="driver_id", dtype=Int64), Field(name="a", dtype=Int64)])
    assert fv.entity_names == ["driver"]
    assert fv.to_spec()["entity_columns"] == []
    assert [f["name"] for f in fv.to_spec()["features"]] == ["driver_id", "a"]


@pytest.mark.parametrize("schema", [[], None, [Field(name="driver_id", dtype=Int64)]])
def test_a_view_without_features_is_an_empty_schema(schema):
    with pytest.raises(EmptySchemaError, match=r"^feature view 'fv' has no features: its schema must list at least "
                                               r"one Field that is not a join key.$"):
        FeatureView(name="fv", source=SOURCE, entities=[DRIVER], schema=schema)


def test_duplicate_fields_are_rejected():
    with pytest.raises(InvalidDefinitionError, match=r"^feature view 'fv' declares field\(s\) a, b more than once.$"):
        FeatureView(name="fv", source=SOURCE, entities=[DRIVER],
                    schema=[Field(name=n, dtype=Int64) for n in ("b", "a", "b", "a", "c")])


@pytest.mark.parametrize("column", ["event_timestamp", "created"])
def test_a_feature_named_like_a_timestamp_column_is_rejected(column):
    with pytest.raises(InvalidDefinitionError,
                       match=rf"^feature view 'fv' declares {column} as a feature, but that column is the source's "
                             r"timestamp.$"):
        FeatureView(name="fv", source=SOURCE, entities=[DRIVER],
                    schema=[Field(name="a", dtype=Int64), Field(name=column, dtype=Int64)])


@pytest.mark.parametrize("version", ["v-1", "v", "2", "latest ", " v1", "V1.0"])
def test_bad_version_strings_fail_at_definition(version):
    with pytest.raises(InvalidVersionError,
                       match=rf"^'{version}' is not a valid version of feature view 'driver_stats'"):
        view(version=version)


@pytest.mark.parametrize(("version", "normal", "number"), [("latest", "latest", None), ("LATEST", "latest", None),
                                                           ("V2", "v2", 2), ("version0", "v0", 0)])
def test_version_strings_are_normalised(version, normal, number):
    fv = view(version=version)
    assert (fv.version, fv.version_number, fv.to_spec()["version"]) == (normal, number, normal)


@pytest.mark.parametrize("ttl", [timedelta(seconds=-1), 5, "1d"])
def test_ttl_must_be_a_non_negative_timedelta(ttl):
    with pytest.raises(InvalidDefinitionError,
                       match="^ttl of feature view 'driver_stats' must be a non-negative timedelta or None, "
                             f"got {re.escape(repr(ttl))}.$"):
        view(ttl=ttl)


@pytest.mark.parametrize("ttl", [None, timedelta(0)])
def test_no_ttl_or_zero_means_forever(ttl):
    fv = view(ttl=ttl)
    assert fv.ttl is None
    assert fv.to_spec()["ttl_seconds"] is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"source": "data/x.parquet"}, r"^feature view 'fv' needs source=FileSource\(...\), got 'data/x.parquet'.$"),
    ({"entities": [DRIVER, "driver"]}, r"^feature view 'fv' lists an entity twice: \['driver', 'driver'\].$"),
    ({"entities": [3]}, r"^entities of feature view 'fv' must be Entity objects or names, got 3.$"),
    ({"schema": [Field(name="a", dtype=Int64), ("b", Int64)]},
     r"^schema of feature view 'fv' must be a list of Field\(...\), got \('b', Int64\).$"),
    ({"online": 1}, r"^online of feature view 'fv' must be True or False, got 1.$"),
])
def test_feature_view_rejects_bad_arguments(kwargs, message):
    args = {"name": "fv", "source": SOURCE, "entities": [DRIVER], "schema": [Field(name="a", dtype=Int64)], **kwargs}
    with pytest.raises(InvalidDefinitionError, match=message):
        FeatureView(**args)


def test_projection():
    fv = view(("conv_rate", "trips_today", "acc_rate"))
    projection = fv[["acc_rate", "conv_rate"]]
    assert isinstance(projection, FeatureViewProjection)
    assert projection.view is fv
    assert projection.to_spec() == {"view": "driver_stats", "version": None, "features": ["acc_rate", "conv_rate"]}
    assert fv["conv_rate"].to_spec() == {"view": "driver_stats", "version": None, "features": ["conv_rate"]}


def test_projection_of_an_unknown_feature():
    fv = view(("conv_rate", "trips_today"))
    with pytest.raises(UnknownReferenceError,
                       match=r"^Feature view 'driver_stats' has no feature\(s\) driver_id, nope; "
                             r"it has conv_rate, trips_today.$"):
        fv[["conv_rate", "driver_id", "nope"]]


def test_empty_projection():
    with pytest.raises(InvalidDefinitionError, match=r"^A projection of 'driver_stats' must name at least one feature"):
        view()[[]]


def test_feature_view_from_spec_round_trips():
    fv = view(("conv_rate", "city"), ttl=timedelta(days=2), online=False, description="d", tags={"t": "1"},
              owner="o", version="v4", prevent_destroy=True)
    again = FeatureView.from_spec(fv.to_spec(), SOURCE, [DRIVER])
    assert again.to_spec() == fv.to_spec()
    assert again == fv
    assert again.ttl == timedelta(days=2)


def test_equality_is_by_spec():
    assert view() == view()
    assert hash(view()) == hash(view())
    assert view() != view(description="other")
    assert view() != view(("conv_rate",))
    assert view() != view(version="v0")
    assert Entity(name="driver") != FileSource(path="data/driver.parquet")
    assert repr(view()) == "FeatureView(name='driver_stats')"


# --- FeatureService ----------------------------------------------------------------------------------------


def test_service_of_whole_views_and_projections():
    fv = view(("conv_rate", "trips_today"))
    other = view(("city",), name="driver_city")
    service = FeatureService(name="svc", features=[fv, other[["city"]]], description="d", tags={"t": "1"})
    assert service.to_spec() == {
        "name": "svc",
        "features": [{"view": "driver_stats", "version": None, "features": None},
                     {"view": "driver_city", "version": None, "features": ["city"]}],
        "description": "d", "tags": {"t": "1"}, "owner": "", "prevent_destroy": False,
    }
    assert service.feature_views == [fv, other]


def test_service_with_pinned_string_references():
    service = FeatureService(name="svc", features=["driver_stats@v1:conv_rate", "driver_stats:trips_today",
                                                   "driver_stats@latest:acc_rate"])
    assert service.to_spec()["features"] == [
        {"view": "driver_stats", "version": 1, "features": ["conv_rate"]},
        {"view": "driver_stats", "version": None, "features": ["trips_today", "acc_rate"]},
    ]
    assert service.feature_views == []


def test_references_to_one_view_and_version_merge_into_one_projection():
    fv = view(("conv_rate", "trips_today", "acc_rate"))
    service = FeatureService(name="svc", features=[
        fv[["conv_rate"]], "driver_stats@v1:conv_rate", "driver_stats:trips_today", "driver_stats@v1:trips_today",
        "driver_stats@v1:conv_rate", fv[["conv_rate", "acc_rate"]], "driver_stats@v2:acc_rate",
    ])
    assert [p.to_spec() for p in service.projections] == [
        {"view": "driver_stats", "version": None, "features": ["conv_rate", "trips_today", "acc_rate"]},
        {"view": "driver_stats", "version": 1, "features": ["conv_rate", "trips_today"]},
        {"view": "driver_stats", "version": 2, "features": ["acc_rate"]},
    ]
    # The merged projection keeps the view object, so the service still brings the view along.
    assert service.feature_views == [fv]


def test_a_whole_view_absorbs_projections_of_it():
    fv = view()
    service = FeatureService(name="svc", features=[fv[["conv_rate"]], fv])
    assert service.to_spec()["features"] == [{"view": "driver_stats", "version": None, "features": None}]


def test_merged_string_reference_is_checked_against_the_view():
    fv = view(("conv_rate",))
    with pytest.raises(UnknownReferenceError,
                       match=r"^Feature view 'driver_stats' has no feature\(s\) nope; it has conv_rate.$"):
        FeatureService(name="svc", features=[fv[["conv_rate"]], "driver_stats:nope"])


@pytest.mark.parametrize(("features", "error", "message"), [
    ([], EmptySchemaError, r"^feature service 'svc' has no features; list at least one feature view or reference.$"),
    ("driver_stats:conv_rate", InvalidDefinitionError, r"^features of feature service 'svc' must be a list.$"),
    (None, InvalidDefinitionError, r"^features of feature service 'svc' must be a list.$"),
    ([3], InvalidDefinitionError, r"^features of feature service 'svc' may hold feature views, projections such as "
                                  r"fv\[\['a'\]\], or references such as 'fv@v1:a'; got 3.$"),
    (["driver_stats"], InvalidReferenceError, r"^'driver_stats' is not a feature reference"),
    (["driver_stats@v-1:a"], InvalidVersionError, r"^'v-1' is not a valid version in 'driver_stats@v-1:a'"),
])
def test_service_rejects_bad_features(features, error, message):
    with pytest.raises(error, match=message):
        FeatureService(name="svc", features=features)


def test_service_from_spec_round_trips():
    service = FeatureService(name="svc", features=[view()[["conv_rate"]], "driver_stats@v1:trips_today"],
                             description="d", tags={"t": "1"}, owner="o", prevent_destroy=True)
    again = FeatureService.from_spec(service.to_spec())
    assert again.to_spec() == service.to_spec()
    assert again == service
    assert again.feature_views == []


def test_entity_from_spec_round_trips():
    entity = Entity(name="driver", join_keys=["driver_id"], value_type=String, description="d", tags={"a": "b"},
                    owner="o", prevent_destroy=True)
    assert Entity.from_spec(entity.to_spec()) == entity
    assert Entity.from_spec(entity.to_spec()).value_type == String


def test_sub_second_ttl_round_trips():
    fv = view(ttl=timedelta(milliseconds=1500))
    assert fv.to_spec()["ttl_seconds"] == 1.5
    assert FeatureView.from_spec(fv.to_spec(), SOURCE, [DRIVER]).to_spec() == fv.to_spec()
    assert view(ttl=timedelta(days=1)).to_spec()["ttl_seconds"] == 86400


def test_unknown_feature_reference_next_to_the_whole_view_is_rejected():
    with pytest.raises(UnknownReferenceError, match=r"Feature view 'driver_stats' has no feature\(s\) nope"):
        FeatureService(name="svc", features=[view(("conv_rate",)), "driver_stats:nope"])
    with pytest.raises(UnknownReferenceError, match=r"no feature\(s\) nope"):
        FeatureService(name="svc", features=["driver_stats:nope", view(("conv_rate",))])
