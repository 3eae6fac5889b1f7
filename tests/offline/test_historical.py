"""``historical_features``: point-in-time joins against the brute-force reference (DESIGN §9)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feature_rollout.arrow_types import arrow_type
from feature_rollout.core.errors import (
    EntityKeyError,
    InvalidReferenceError,
    NaiveTimestampError,
    SchemaMismatchError,
    SourceNotFoundError,
)
from feature_rollout.offline import FeatureRead, historical_features, normalize_spine

from . import reference
from .builders import BASE_US, TS, timestamps, view_spec, write

FEATURES = (("trips", "Int64"), ("rate", "Float32"), ("name", "String"), ("hist", "Array(Int64)"))
FEATURE_NAMES = [name for name, _ in FEATURES]
KEYS = (("driver_id", "Int64"), ("city", "String"))

# Small pools, so that equal keys, equal event times and equal created times happen often.
VALUES = {
    "trips": st.sampled_from([None, -2, 0, 1, 2]),
    "rate": st.sampled_from([None, -1.5, 0.0, 0.25, 2.0]),  # exact in float32
    "name": st.sampled_from([None, "", "a", "ab", "b", "é"]),
    "hist": st.one_of(st.none(), st.lists(st.sampled_from([None, 0, 1, 2]), max_size=2)),
}
SOURCE_KEYS = {"driver_id": st.sampled_from([0, 1, 2, None]), "city": st.sampled_from(["x", "y", None])}
SPINE_KEYS = {"driver_id": st.sampled_from([0, 1, 3, None]), "city": st.sampled_from(["x", "z", None])}


CREATED = st.sampled_from([0, 1, 2, None])


def source_row(n_keys: int) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        **{name: SOURCE_KEYS[name] for name, _ in KEYS[:n_keys]},
        "ts": st.sampled_from([*range(6), None]),
        "created": CREATED,
        **VALUES,
    })


def spine_row(n_keys: int) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        **{name: SPINE_KEYS[name] for name, _ in KEYS[:n_keys]},
        "ts": st.sampled_from([-1, *range(9), None]),
    })


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[reference.Read]]:
    n_keys = draw(st.integers(1, 2))
    keys = [name for name, _ in KEYS[:n_keys]]
    reads: list[reference.Read] = []
    twins: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 3))):
        if reads and draw(st.booleans()):
            # Another version of the previous view over the same source, with another ttl and selection.
            rows, has_created = reads[-1].rows, reads[-1].has_created
        else:
            rows = draw(st.lists(source_row(n_keys), min_size=1, max_size=12))
            # Twins: rows of the same key and event time that differ in one field, for the tie rule.
            for _ in range(draw(st.integers(0, 6))):
                twin = dict(draw(st.sampled_from(rows)))
                field = draw(st.sampled_from(["created", "created", "created", *FEATURE_NAMES]))
                other = (CREATED if field == "created" else VALUES[field]).filter(lambda v, old=twin[field]: v != old)
                twin[field] = draw(other)
                rows.append(twin)
                twins.append(twin)
            has_created = draw(st.sampled_from([True, False]))
        selected = draw(st.lists(st.sampled_from(FEATURE_NAMES), min_size=1, max_size=4, unique=True))
        reads.append(reference.Read(
            rows=rows, keys=keys, features=FEATURE_NAMES,
            selected=[(f, f"r{len(reads)}_{f}") for f in selected],
            ttl_us=draw(st.sampled_from([None, 0, 1, 2, 3, 5])), has_created=has_created,
        ))
    # Half the spine rows sit just after a source row (often a twin) of the same key (0, ttl, ttl + 1 µs, ...),
    # so that matches, ties and ttl edges are common; the others are anywhere (often before any data).
    all_rows = [row for read in reads for row in read.rows]
    spine = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.booleans()):
            near = draw(st.sampled_from(twins if twins and draw(st.booleans()) else all_rows))
            delta = draw(st.sampled_from([0, 0, 1, 2, 3, 4, 5, 6, -1]))
            spine.append({**{k: near[k] for k in keys}, "ts": None if near["ts"] is None else near["ts"] + delta})
        else:
            spine.append(draw(spine_row(n_keys)))
    return spine, reads


def write_source(repo: Path, name: str, read: reference.Read) -> dict[str, Any]:
    """Write a reference read's rows as Parquet and return the view spec of that source."""
    columns: dict[str, pa.Array] = {
        key: pa.array([r[key] for r in read.rows], arrow_type(dtype)) for key, dtype in KEYS if key in read.keys
    }
    columns["event_timestamp"] = timestamps([None if r["ts"] is None else BASE_US + r["ts"] for r in read.rows])
    if read.has_created:
        columns["created"] = timestamps([r["created"] for r in read.rows])
    for feature, dtype in FEATURES:
        columns[feature] = pa.array([r[feature] for r in read.rows], arrow_type(dtype))
    write(repo / "data" / f"{name}.parquet", columns)
    return view_spec(name, features=FEATURES, keys=[k for k in KEYS if k[0] in read.keys],
                     path=f"data/{name}.parquet", created="created" if read.has_created else "")


def spine_table(spine: list[dict[str, Any]], keys: list[str]) -> pa.Table:
    columns: dict[str, pa.Array] = {"label": pa.array(range(len(spine)), pa.int32())}
    columns["event_timestamp"] = timestamps([None if r["ts"] is None else BASE_US + r["ts"] for r in spine])
    for key, dtype in KEYS:
        if key in keys:
            columns[key] = pa.array([r[key] for r in spine], arrow_type(dtype))
    return pa.table(columns)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_point_in_time_join_matches_the_reference(scenario: tuple[list[dict[str, Any]], list[reference.Read]]) -> None:
    spine, reads = scenario
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        specs: dict[int, dict[str, Any]] = {}
        feature_reads = []
        for index, read in enumerate(reads):
            key = id(read.rows)
            if key not in specs:
                specs[key] = write_source(repo, f"view{index}", read)
            ttl = None if read.ttl_us is None else read.ttl_us / 1_000_000
            feature_reads.append(FeatureRead(specs[key], tuple(read.selected), ttl))
        table = spine_table(spine, list(reads[0].keys))
        result = historical_features(table, feature_reads, repo)

    outputs = [output for read in reads for _, output in read.selected]
    assert result.column_names == [*table.column_names, *outputs]
    assert result.select(table.column_names).equals(normalize_spine(table))
    got = result.select(outputs).to_pylist()
    assert got == reference.point_in_time(spine, reads)


# --- edges, one at a time ---------------------------------------------------------------------

HOUR = 3_600_000_000


def one_read(repo: Path, rows: list[tuple[int, int, int]], *, ttl: float | None, created: bool = False) -> FeatureRead:
    """A view over (driver_id, ts offset, value) rows; with ``created``, created = the row index."""
    columns: dict[str, Any] = {
        "driver_id": pa.array([r[0] for r in rows], pa.int64()),
        "event_timestamp": timestamps([BASE_US + r[1] for r in rows]),
        "value": pa.array([r[2] for r in rows], pa.int64()),
    }
    if created:
        columns["created"] = timestamps(list(range(len(rows))))
    write(repo / "data" / "stats.parquet", columns)
    return FeatureRead(view_spec(created="created" if created else ""), (("value", "value"),), ttl)


def spine_at(*rows: tuple[int | None, int | None]) -> pa.Table:
    return pa.table({
        "driver_id": pa.array([r[0] for r in rows], pa.int64()),
        "event_timestamp": timestamps([None if r[1] is None else BASE_US + r[1] for r in rows]),
    })


def values(table: pa.Table, column: str = "value") -> list[Any]:
    return table.column(column).to_pylist()


def test_ttl_bounds_are_inclusive_to_the_microsecond(tmp_path: Path) -> None:
    read = one_read(tmp_path, [(1, 0, 10)], ttl=3600.0)
    spine = spine_at((1, HOUR), (1, HOUR + 1), (1, 0), (1, -1), (1, None), (None, HOUR))
    # at exactly ttl: counts; ttl + 1 µs: does not; same instant: counts; before: does not
    assert values(historical_features(spine, [read], tmp_path)) == [10, None, 10, None, None, None]


def test_no_ttl_and_zero_ttl_have_no_lower_bound(tmp_path: Path) -> None:
    for ttl in (None, 0, 0.0):
        read = one_read(tmp_path, [(1, 0, 10)], ttl=ttl)
        assert values(historical_features(spine_at((1, 1000 * HOUR)), [read], tmp_path)) == [10]


def test_a_fractional_ttl(tmp_path: Path) -> None:
    read = one_read(tmp_path, [(1, 0, 10)], ttl=1.5)
    assert values(historical_features(spine_at((1, 1_500_000), (1, 1_500_001)), [read], tmp_path)) == [10, None]


def test_the_latest_row_wins_and_created_breaks_ties(tmp_path: Path) -> None:
    rows = [(1, 0, 1), (1, 5, 2), (1, 5, 3), (1, 9, 4)]
    read = one_read(tmp_path, rows, ttl=None, created=True)
    # At 5 two rows tie on event time: the one created later (index 2, value 3) wins.
    assert values(historical_features(spine_at((1, 5), (1, 8), (1, 9), (1, 4)), [read], tmp_path)) == [3, 3, 4, 1]


def test_without_created_column_ties_go_to_the_greatest_values_whatever_the_file_order(tmp_path: Path) -> None:
    for rows in ([(1, 5, 2), (1, 5, 7), (1, 5, 3)], [(1, 5, 7), (1, 5, 3), (1, 5, 2)]):
        read = one_read(tmp_path, rows, ttl=None)
        assert values(historical_features(spine_at((1, 5)), [read], tmp_path)) == [7]


def test_the_tie_rule_uses_every_feature_whatever_a_read_selects(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", {
        "driver_id": [1, 1], "event_timestamp": timestamps([BASE_US, BASE_US]), "a": [1, 1], "b": [5, 9],
    })
    spec = view_spec(features=[("a", "Int64"), ("b", "Int64")])
    only_a = FeatureRead(spec, (("a", "a"),), None)
    both = FeatureRead(spec, (("a", "a2"), ("b", "b2")), None)
    result = historical_features(spine_at((1, 0)), [only_a, both], tmp_path)
    assert result.select(["a", "a2", "b2"]).to_pylist() == [{"a": 1, "a2": 1, "b2": 9}]


def test_a_large_spine_keeps_every_row_in_order(tmp_path: Path) -> None:
    # The Feast file store returned 99,998 rows for a 100,000-row spine; here: exactly n, in order.
    n_drivers, n_hours = 200, 50
    rows = [(d, h * HOUR, d * 1000 + h) for d in range(n_drivers) for h in range(n_hours)]
    read = one_read(tmp_path, rows, ttl=2 * 3600.0)
    n = 30_000
    spine_rows = [((i * 7919) % (n_drivers + 10), ((i * 104729) % (n_hours + 5)) * HOUR + (i % 3) * 1_800_000_000)
                  for i in range(n)]
    result = historical_features(spine_at(*spine_rows), [read], tmp_path)
    assert result.num_rows == n
    expected = []
    for driver, t in spine_rows:
        hour = min(t // HOUR, n_hours - 1)
        ok = driver < n_drivers and t - hour * HOUR <= 2 * HOUR
        expected.append(driver * 1000 + hour if ok else None)
    assert values(result) == expected
    assert values(result, "driver_id") == [d for d, _ in spine_rows]


def test_two_versions_with_different_sources(tmp_path: Path) -> None:
    write(tmp_path / "data" / "v1.parquet", {
        "driver_id": [1], "event_timestamp": timestamps([BASE_US]), "trips": pa.array([5], pa.int32()),
    })
    write(tmp_path / "data" / "v2.parquet", {
        "driver_id": [1], "ts": timestamps([BASE_US + 10]), "trips_total": [7.0],
    })
    v1 = view_spec("stats", features=[("trips", "Int32")], path="data/v1.parquet")
    v2 = view_spec("stats", features=[("trips", "Float64")], path="data/v2.parquet", timestamp_field="ts",
                   field_mapping={"trips_total": "trips"})
    result = historical_features(spine_at((1, 5), (1, 20)), [
        FeatureRead(v1, (("trips", "stats@v1__trips"),), None),
        FeatureRead(v2, (("trips", "stats@v2__trips"),), None),
    ], tmp_path)
    assert result.schema.field("stats@v1__trips").type == pa.int32()
    assert result.schema.field("stats@v2__trips").type == pa.float64()
    assert result.select(["stats@v1__trips", "stats@v2__trips"]).to_pylist() == [
        {"stats@v1__trips": 5, "stats@v2__trips": None}, {"stats@v1__trips": 5, "stats@v2__trips": 7.0},
    ]


def test_a_pandas_spine_in_another_zone_and_an_empty_spine(tmp_path: Path) -> None:
    read = one_read(tmp_path, [(1, 0, 10)], ttl=None)
    df = pd.DataFrame({"driver_id": [1, 1], "event_timestamp": pd.to_datetime(
        [BASE_US - 1, BASE_US], unit="us", utc=True).tz_convert("America/New_York")})
    assert values(historical_features(df, [read], tmp_path)) == [None, 10]
    empty = historical_features(spine_at(), [read], tmp_path)
    assert empty.num_rows == 0
    assert empty.schema == pa.schema([("driver_id", pa.int64()), ("event_timestamp", TS), ("value", pa.int64())])
    assert historical_features(spine_at((1, 0)), [], tmp_path).equals(spine_at((1, 0)))


def test_a_spine_key_column_of_another_numeric_type_matches(tmp_path: Path) -> None:
    read = one_read(tmp_path, [(1, 0, 10)], ttl=None)
    spine = pa.table({"driver_id": pa.array([1, 2], pa.int32()), "event_timestamp": timestamps([BASE_US] * 2)})
    result = historical_features(spine, [read], tmp_path)
    assert result.schema.field("driver_id").type == pa.int32()
    assert values(result) == [10, None]


# --- errors -----------------------------------------------------------------------------------


def test_a_naive_spine(tmp_path: Path) -> None:
    read = one_read(tmp_path, [(1, 0, 10)], ttl=None)
    df = pd.DataFrame({"driver_id": [1], "event_timestamp": pd.to_datetime(["2024-01-01"])})
    with pytest.raises(NaiveTimestampError, match=r'tz_localize\("UTC"\)'):
        historical_features(df, [read], tmp_path)


def test_a_spine_without_event_timestamp(tmp_path: Path) -> None:
    read = one_read(tmp_path, [(1, 0, 10)], ttl=None)
    with pytest.raises(EntityKeyError, match="no 'event_timestamp' column"):
        historical_features(pa.table({"driver_id": [1]}), [read], tmp_path)


def test_a_spine_without_a_join_key(tmp_path: Path) -> None:
    read = one_read(tmp_path, [(1, 0, 10)], ttl=None)
    spine = pa.table({"driver": [1], "event_timestamp": timestamps([BASE_US])})
    with pytest.raises(EntityKeyError, match=r"lack join key 'driver_id' of feature view 'stats'.*Add a 'driver_id'"):
        historical_features(spine, [read], tmp_path)


def test_a_join_key_of_a_type_that_never_matches(tmp_path: Path) -> None:
    read = one_read(tmp_path, [(1, 0, 10)], ttl=None)
    spine = pa.table({"driver_id": ["1"], "event_timestamp": timestamps([BASE_US])})
    with pytest.raises(EntityKeyError, match=r"'driver_id' is string in the entity rows but int64.*Cast"):
        historical_features(spine, [read], tmp_path)


def test_output_name_collisions(tmp_path: Path) -> None:
    read = one_read(tmp_path, [(1, 0, 10)], ttl=None)
    with pytest.raises(InvalidReferenceError, match="'value'.*also a column of the read of 'stats'"):
        historical_features(spine_at((1, 0)), [read, read], tmp_path)
    spine = spine_at((1, 0)).append_column("value", pa.array([0]))
    with pytest.raises(InvalidReferenceError, match="'value'.*also a column of the entity rows"):
        historical_features(spine, [read], tmp_path)


def test_an_unknown_feature(tmp_path: Path) -> None:
    read = one_read(tmp_path, [(1, 0, 10)], ttl=None)
    bad = FeatureRead(read.view_spec, (("nope", "nope"),), None)
    with pytest.raises(InvalidReferenceError, match=r"'stats' has no feature 'nope' \(it has: value\)"):
        historical_features(spine_at((1, 0)), [bad], tmp_path)


def test_source_errors_surface(tmp_path: Path) -> None:
    read = one_read(tmp_path, [(1, 0, 10)], ttl=None)
    missing = FeatureRead(view_spec(path="data/other.parquet"), (("value", "value"),), None)
    with pytest.raises(SourceNotFoundError, match="data/other.parquet"):
        historical_features(spine_at((1, 0)), [missing], tmp_path)
    wrong = FeatureRead(view_spec(features=[("value", "String")]), (("value", "value2"),), None)
    with pytest.raises(SchemaMismatchError, match="'value' as String, but .* has int64"):
        historical_features(spine_at((1, 0)), [read, wrong], tmp_path)


def test_a_value_out_of_the_declared_range_is_a_schema_error(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", {
        "driver_id": [1], "event_timestamp": timestamps([BASE_US]), "value": [3_000_000_000],
    })
    read = FeatureRead(view_spec(features=[("value", "Int32")]), (("value", "value"),), None)
    with pytest.raises(SchemaMismatchError, match="does not fit its declared type.*3000000000 not in range"):
        historical_features(spine_at((1, 0)), [read], tmp_path)


def test_naive_file_timestamps_are_utc_in_the_join(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", {
        "driver_id": [1, 1],
        "event_timestamp": timestamps([BASE_US, BASE_US + HOUR], pa.timestamp("ns")),
        "value": [1, 2],
    })
    spine = pa.table({
        "driver_id": [1, 1, 1],
        "event_timestamp": timestamps([BASE_US - 1, BASE_US + HOUR - 1, BASE_US + HOUR], pa.timestamp("us", "+01:00")),
    })
    result = historical_features(spine, [FeatureRead(view_spec(), (("value", "value"),), None)], tmp_path)
    assert values(result) == [None, 1, 2]
