"""Locating and checking sources (``offline.sources``): paths, globs, URIs, field_mapping, types, timestamps."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_rollout.arrow_types import CREATED_TS, EVENT_TS
from feature_rollout.core.errors import SchemaMismatchError, SourceNotFoundError
from feature_rollout.offline import check_columns, count_rows, max_event_time, min_event_time, open_dataset
from feature_rollout.offline.sources import ViewSource

from .builders import BASE_US, TS, at, timestamps, view_spec, write

HOUR = 3_600_000_000


def rows(n: int, start_us: int = BASE_US) -> dict[str, pa.Array]:
    return {
        "driver_id": pa.array(range(n), pa.int64()),
        "event_timestamp": timestamps([start_us + i * HOUR for i in range(n)]),
        "value": pa.array(range(100, 100 + n), pa.int64()),
    }


def read_all(spec: dict[str, object], repo: Path) -> pa.Table:
    source = ViewSource.resolve(spec, repo)
    return source.scanner([*source.key_names, *source.feature_names, EVENT_TS]).to_table()


# --- paths ------------------------------------------------------------------------------------


def test_a_single_relative_file(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", rows(3))
    dataset = open_dataset({"path": "data/stats.parquet"}, tmp_path)
    assert dataset.to_table().num_rows == 3
    assert dataset.files == [(tmp_path / "data" / "stats.parquet").as_posix()]


def test_an_absolute_path_ignores_the_repo(tmp_path: Path) -> None:
    write(tmp_path / "elsewhere" / "s.parquet", rows(2))
    dataset = open_dataset({"path": str(tmp_path / "elsewhere" / "s.parquet")}, tmp_path / "repo")
    assert dataset.to_table().num_rows == 2


def test_a_directory_reads_every_parquet_file_and_skips_hidden_ones(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats" / "part-0.parquet", rows(2))
    write(tmp_path / "data" / "stats" / "part-1.parquet", rows(3, BASE_US + 10 * HOUR))
    (tmp_path / "data" / "stats" / "_SUCCESS").write_text("")
    (tmp_path / "data" / "stats" / ".part-0.parquet.crc").write_text("junk")
    spec = view_spec(path="data/stats")
    assert read_all(spec, tmp_path).num_rows == 5


def test_a_glob_matches_within_a_directory_and_recursively(tmp_path: Path) -> None:
    write(tmp_path / "data" / "a.parquet", rows(1))
    write(tmp_path / "data" / "b.parquet", rows(2))
    write(tmp_path / "data" / "c.txt.parquet.bak", rows(4))
    write(tmp_path / "data" / "deep" / "er" / "d.parquet", rows(8))
    assert open_dataset({"path": "data/*.parquet"}, tmp_path).count_rows() == 3
    assert open_dataset({"path": "data/**/*.parquet"}, tmp_path).count_rows() == 11
    assert open_dataset({"path": "data/[ab].parquet"}, tmp_path).count_rows() == 3
    assert open_dataset({"path": "data/*/*/?.parquet"}, tmp_path).count_rows() == 8


def test_a_file_uri(tmp_path: Path) -> None:
    write(tmp_path / "data" / "x.parquet", rows(4))
    write(tmp_path / "data" / "y.parquet", rows(1))
    assert open_dataset({"path": (tmp_path / "data" / "x.parquet").as_uri()}, Path("/nonexistent")).count_rows() == 4
    uri_glob = (tmp_path / "data").as_uri() + "/*.parquet"
    assert open_dataset({"path": uri_glob}, Path("/nonexistent")).count_rows() == 5


@pytest.mark.parametrize("path", ["data/missing.parquet", "data/*.parquet", "nowhere/**/*.parquet"])
def test_a_path_that_matches_nothing(tmp_path: Path, path: str) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(SourceNotFoundError) as raised:
        open_dataset({"path": path}, tmp_path)
    message = str(raised.value)
    assert f"'{path}'" in message
    assert str(tmp_path) in message  # where it looked


def test_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "data" / "stats").mkdir(parents=True)
    with pytest.raises(SourceNotFoundError, match=r"'data/stats'.*holds no Parquet file"):
        open_dataset({"path": "data/stats"}, tmp_path)


def test_every_reader_reports_a_missing_source(tmp_path: Path) -> None:
    spec = view_spec(path="data/gone.parquet")
    for call in (lambda: check_columns(spec, tmp_path), lambda: min_event_time(spec, tmp_path),
                 lambda: count_rows(spec, tmp_path, at(0), at(BASE_US))):
        with pytest.raises(SourceNotFoundError, match="data/gone.parquet"):
            call()


# --- columns and types ------------------------------------------------------------------------


def test_field_mapping_renames_source_columns_to_features_and_keys(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", {
        "drv": pa.array([7], pa.int64()), "ts": timestamps([BASE_US]), "trips": pa.array([3], pa.int32()),
        "value": pa.array([1], pa.int64()),
    })
    spec = view_spec(features=[("trips_today", "Int64"), ("value", "Int64")], timestamp_field="ts",
                     field_mapping={"drv": "driver_id", "trips": "trips_today"})
    table = read_all(spec, tmp_path)
    assert table.column_names == ["driver_id", "trips_today", "value", EVENT_TS]
    assert table.schema.field("trips_today").type == pa.int64()  # cast to the declared type
    assert table.to_pylist() == [{"driver_id": 7, "trips_today": 3, "value": 1, EVENT_TS: at(BASE_US)}]


def test_a_mapped_away_column_is_no_longer_there_under_its_old_name(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", {**rows(1), "extra": [1]})
    spec = view_spec(field_mapping={"value": "renamed"})
    with pytest.raises(SchemaMismatchError, match="feature 'value'"):
        check_columns(spec, tmp_path)


def test_two_columns_mapped_to_one_name(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", {**rows(1), "other": [1]})
    with pytest.raises(SchemaMismatchError, match=r"two columns that become 'value' \('value' and 'other'"):
        check_columns(view_spec(field_mapping={"other": "value"}), tmp_path)


def test_a_missing_feature_names_the_column_the_type_and_the_file(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", rows(1))
    spec = view_spec(features=[("value", "Int64"), ("conv_rate", "Float32")])
    with pytest.raises(SchemaMismatchError) as raised:
        check_columns(spec, tmp_path)
    message = str(raised.value)
    assert "feature 'conv_rate' (Float32)" in message
    assert "stats.parquet" in message
    assert "field_mapping" in message  # what to do


def test_a_missing_join_key(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", rows(1))
    with pytest.raises(SchemaMismatchError, match=r"join key 'rider_id'.*has no such column"):
        check_columns(view_spec(keys=[("driver_id", "Int64"), ("rider_id", "String")]), tmp_path)


@pytest.mark.parametrize(("declared", "found", "values"), [
    ("Int64", pa.string(), ["1"]),
    ("String", pa.int64(), [1]),
    ("Bool", pa.int32(), [1]),
    ("Float32", pa.bool_(), [True]),
    ("UnixTimestamp", pa.int64(), [1]),
    ("Array(Int64)", pa.int64(), [1]),
    ("Array(Float32)", pa.list_(pa.string()), [["x"]]),
    ("Bytes", pa.string(), ["x"]),
])
def test_an_incompatible_type_names_declared_and_found(tmp_path: Path, declared: str, found: pa.DataType,
                                                        values: list[object]) -> None:
    write(tmp_path / "data" / "stats.parquet", {**rows(1), "feature": pa.array(values, found)})
    with pytest.raises(SchemaMismatchError) as raised:
        check_columns(view_spec(features=[("feature", declared)]), tmp_path)
    message = str(raised.value)
    assert f"feature 'feature' as {declared}" in message
    assert f"has {pq.read_schema(tmp_path / 'data' / 'stats.parquet').field('feature').type}" in message
    assert "stats.parquet" in message


def test_an_incompatible_join_key_type(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", {**rows(1), "driver_id": ["a"]})
    with pytest.raises(SchemaMismatchError, match=r"join key 'driver_id' as Int64, but .* has string"):
        check_columns(view_spec(), tmp_path)


def test_compatible_types_are_cast_to_the_declared_ones(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", {
        "driver_id": pa.array([1], pa.int32()),
        "event_timestamp": timestamps([BASE_US]),
        "f32": pa.array([0.5], pa.float64()),
        "i32": pa.array([5], pa.int64()),
        "f64": pa.array([7], pa.uint8()),
        "s": pa.array(["x"], pa.large_string()),
        "d": pa.array(["y"]).dictionary_encode(),
        "b": pa.array([b"z"], pa.large_binary()),
        "ts": timestamps([BASE_US], pa.timestamp("ns")),
        "emb": pa.array([[1.5, 2.5]], pa.list_(pa.float64(), 2)),
        "empty": pa.array([None], pa.null()),
    })
    spec = view_spec(features=[("f32", "Float32"), ("i32", "Int32"), ("f64", "Float64"), ("s", "String"),
                               ("d", "String"), ("b", "Bytes"), ("ts", "UnixTimestamp"), ("emb", "Array(Float32)"),
                               ("empty", "Int64")])
    table = read_all(spec, tmp_path)
    assert table.schema == pa.schema([
        ("driver_id", pa.int64()), ("f32", pa.float32()), ("i32", pa.int32()), ("f64", pa.float64()),
        ("s", pa.string()), ("d", pa.string()), ("b", pa.binary()), ("ts", TS), ("emb", pa.list_(pa.float32())),
        ("empty", pa.int64()), (EVENT_TS, TS),
    ])
    assert table.to_pylist()[0] == {
        "driver_id": 1, "f32": 0.5, "i32": 5, "f64": 7.0, "s": "x", "d": "y", "b": b"z", "ts": at(BASE_US),
        "emb": [1.5, 2.5], "empty": None, EVENT_TS: at(BASE_US),
    }


def test_a_join_key_without_a_dtype_keeps_the_source_type(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", {**rows(1), "driver_id": pa.array([3], pa.int16())})
    source = ViewSource.resolve(view_spec(keys=[("driver_id", None)]), tmp_path)
    assert source.keys[0].type == pa.int16()


def test_a_value_that_does_not_fit_fails_the_read_with_a_schema_error(tmp_path: Path) -> None:
    from feature_rollout.offline import latest_rows

    write(tmp_path / "data" / "stats.parquet", {**rows(1), "value": [1.5]})
    check_columns(view_spec(), tmp_path)  # the types are compatible ...
    with pytest.raises(SchemaMismatchError, match=r"'stats' does not fit its declared type.*1\.5.*truncated"):
        list(latest_rows(view_spec(), tmp_path, at(0), at(2 * BASE_US)))  # ... this value is not


@pytest.mark.parametrize("role", ["timestamp_field", "created_timestamp_column"])
def test_timestamp_columns_must_exist(tmp_path: Path, role: str) -> None:
    write(tmp_path / "data" / "stats.parquet", rows(1))
    spec = view_spec(**({"timestamp_field": "ts"} if role == "timestamp_field" else {"created": "created_at"}))
    column = "ts" if role == "timestamp_field" else "created_at"
    with pytest.raises(SchemaMismatchError, match=rf"{role}='{column}'.*no such column"):
        check_columns(spec, tmp_path)


@pytest.mark.parametrize("role", ["timestamp_field", "created_timestamp_column"])
def test_timestamp_columns_must_be_timestamps(tmp_path: Path, role: str) -> None:
    write(tmp_path / "data" / "stats.parquet", {**rows(1), "created": ["2024-01-01"], "epoch": [1]})
    spec = view_spec(**({"timestamp_field": "epoch"} if role == "timestamp_field" else {"created": "created"}))
    found = "int64" if role == "timestamp_field" else "string"
    expected = rf"The {role} '.*' .* must be a timestamp column, but .* has {found}"
    with pytest.raises(SchemaMismatchError, match=expected):
        check_columns(spec, tmp_path)


# --- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize("arrow_type", [
    pa.timestamp("s"), pa.timestamp("ms"), pa.timestamp("us"), pa.timestamp("ns"),
    pa.timestamp("us", tz="UTC"), pa.timestamp("ns", tz="America/New_York"), pa.timestamp("s", tz="+05:30"),
])
def test_file_timestamps_of_any_unit_and_zone_are_utc_and_naive_ones_are_read_as_utc(
        tmp_path: Path, arrow_type: pa.DataType) -> None:
    moments = [BASE_US, BASE_US + HOUR, BASE_US + 2 * HOUR]
    write(tmp_path / "data" / "stats.parquet", {
        "driver_id": [1, 2, 3], "event_timestamp": timestamps(moments, arrow_type), "value": [1, 2, 3],
        "created": timestamps(moments, arrow_type),
    })
    spec = view_spec(created="created")
    source = ViewSource.resolve(spec, tmp_path)
    table = source.scanner([EVENT_TS, CREATED_TS]).to_table()
    assert table.column(EVENT_TS).to_pylist() == [at(m) for m in moments]
    assert table.column(CREATED_TS).to_pylist() == [at(m) for m in moments]
    assert min_event_time(spec, tmp_path) == at(BASE_US)
    assert max_event_time(spec, tmp_path) == at(BASE_US + 2 * HOUR)
    # The interval filter is pushed to the raw column: [start, end) in UTC whatever the unit.
    assert count_rows(spec, tmp_path, at(BASE_US), at(BASE_US + 2 * HOUR)) == 2
    assert count_rows(spec, tmp_path, at(BASE_US + 1), at(BASE_US + 2 * HOUR + 1)) == 2


def test_nanoseconds_are_truncated_and_the_interval_agrees_with_the_truncated_value(tmp_path: Path) -> None:
    ns = [BASE_US * 1000 + 999, BASE_US * 1000 + 1000]  # 1 µs apart once truncated
    write(tmp_path / "data" / "stats.parquet", {
        "driver_id": [1, 2], "event_timestamp": pa.array(ns, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
        "value": [1, 2],
    })
    spec = view_spec()
    assert read_all(spec, tmp_path).column(EVENT_TS).to_pylist() == [at(BASE_US), at(BASE_US + 1)]
    assert count_rows(spec, tmp_path, at(BASE_US), at(BASE_US + 1)) == 1
    assert count_rows(spec, tmp_path, at(BASE_US + 1), at(BASE_US + 2)) == 1


def test_event_time_bounds_of_an_empty_source_are_none(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", {
        "driver_id": pa.array([], pa.int64()), "event_timestamp": timestamps([]), "value": pa.array([], pa.int64()),
    })
    assert min_event_time(view_spec(), tmp_path) is None
    assert max_event_time(view_spec(), tmp_path) is None


def test_the_interval_filter_prunes_row_groups(tmp_path: Path) -> None:
    # Ten row groups of one hour each: a one-hour interval must read one group, not ten.
    write(tmp_path / "data" / "stats.parquet", rows(10_000, BASE_US), row_group_size=1_000)
    assert pq.ParquetFile(tmp_path / "data" / "stats.parquet").num_row_groups == 10
    source = ViewSource.resolve(view_spec(), tmp_path)
    start = BASE_US + 2_000 * HOUR
    condition = source.interval_filter(start, start + 1_000 * HOUR)
    groups = [
        group.id
        for fragment in source.dataset.get_fragments()
        for piece in fragment.split_by_row_group(filter=condition)
        for group in piece.row_groups
    ]
    assert groups == [2]
    assert source.scanner([EVENT_TS], lower_us=start, upper_us=start + 1_000 * HOUR).count_rows() == 1_000
