"""The reads of materialization and readiness: ``latest_rows``, ``count_rows``, ``entity_keys``."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feature_rollout.arrow_types import arrow_type
from feature_rollout.core.errors import NaiveTimestampError
from feature_rollout.offline import count_rows, entity_keys, latest_rows
from feature_rollout.online.base import OnlineTable

from . import reference
from .builders import BASE_US, at, timestamps, view_spec, write

FEATURES = (("trips", "Int64"), ("rate", "Float64"), ("tags", "Array(String)"))
FEATURE_NAMES = [name for name, _ in FEATURES]
KEYS = (("driver_id", "Int64"), ("city", "String"))

ROW = st.fixed_dictionaries({
    "driver_id": st.sampled_from([0, 1, 2, None]),
    "city": st.sampled_from(["x", "y", "é"]),
    "ts": st.sampled_from([*range(8), None]),
    "created": st.sampled_from([0, 5, None]),
    "trips": st.sampled_from([1, 2, None]),
    "rate": st.sampled_from([-0.5, 1.0, None]),
    "tags": st.one_of(st.none(), st.lists(st.sampled_from(["a", "b", None]), max_size=2)),
})


def write_rows(repo: Path, rows: list[dict[str, Any]], *, has_created: bool, n_keys: int) -> dict[str, Any]:
    keys = KEYS[:n_keys]
    columns: dict[str, Any] = {name: pa.array([r[name] for r in rows], arrow_type(dtype)) for name, dtype in keys}
    columns["event_timestamp"] = timestamps([None if r["ts"] is None else BASE_US + r["ts"] for r in rows])
    if has_created:
        columns["created"] = timestamps([None if r["created"] is None else BASE_US + r["created"] for r in rows])
    for name, dtype in FEATURES:
        columns[name] = pa.array([r[name] for r in rows], arrow_type(dtype))
    write(repo / "data" / "stats.parquet", columns)
    return view_spec(features=FEATURES, keys=keys, created="created" if has_created else "")


def collect(spec: dict[str, Any], repo: Path, start: datetime, end: datetime, batch_rows: int = 65536) -> pa.Table:
    batches = list(latest_rows(spec, repo, start, end, batch_rows=batch_rows))
    schema = OnlineTable.from_version_spec("any_name", spec).arrow_schema()
    assert all(b.schema == schema for b in batches)
    assert all(0 < b.num_rows <= batch_rows for b in batches)
    return pa.Table.from_batches(batches, schema)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROW, max_size=25), has_created=st.booleans(), n_keys=st.integers(1, 2),
       start=st.integers(-1, 8), length=st.integers(0, 9), batch_rows=st.integers(1, 4))
def test_latest_rows_match_the_reference(rows: list[dict[str, Any]], has_created: bool, n_keys: int, start: int,
                                         length: int, batch_rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        spec = write_rows(repo, rows, has_created=has_created, n_keys=n_keys)
        got = collect(spec, repo, at(BASE_US + start), at(BASE_US + start + length), batch_rows)
        counted = count_rows(spec, repo, at(BASE_US + start), at(BASE_US + start + length))
        keys = entity_keys(spec, repo, at(BASE_US + start), at(BASE_US + start + length))
    key_names = [name for name, _ in KEYS[:n_keys]]
    shifted = [{**r, "ts": None if r["ts"] is None else BASE_US + r["ts"],
                "created": None if r["created"] is None else BASE_US + r["created"]} for r in rows]
    expected = reference.latest(shifted, key_names, FEATURE_NAMES, has_created=has_created,
                                start_us=BASE_US + start, end_us=BASE_US + start + length)
    assert got.to_pylist() == expected
    assert counted == sum(1 for r in shifted if r["ts"] is not None and BASE_US + start <= r["ts"] < BASE_US + start
                          + length)
    assert keys.to_pylist() == [{k: row[k] for k in key_names} for row in expected]


HOUR = 3_600_000_000


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write(tmp_path / "data" / "stats.parquet", {
        "driver_id": [1, 1, 2, 2, 3, None],
        "event_timestamp": timestamps([BASE_US + h * HOUR for h in (0, 1, 1, 2, 3, 1)]),
        "created": timestamps([BASE_US + 9, None, BASE_US, BASE_US, BASE_US, BASE_US]),
        "trips": [10, 11, 20, 21, 30, 99],
    })
    return tmp_path


SPEC = view_spec(features=[("trips", "Int32")], created="created")


def test_the_interval_is_start_inclusive_and_end_exclusive(repo: Path) -> None:
    table = collect(SPEC, repo, at(BASE_US + HOUR), at(BASE_US + 2 * HOUR))
    assert table.to_pylist() == [
        {"driver_id": 1, "trips": 11, "_event_ts": BASE_US + HOUR, "_created_ts": 0},  # created missing: 0
        {"driver_id": 2, "trips": 20, "_event_ts": BASE_US + HOUR, "_created_ts": BASE_US},
    ]
    assert count_rows(SPEC, repo, at(BASE_US + HOUR), at(BASE_US + 2 * HOUR)) == 3  # the null key counts too
    assert entity_keys(SPEC, repo, at(BASE_US + HOUR), at(BASE_US + 2 * HOUR)).to_pylist() == [
        {"driver_id": 1}, {"driver_id": 2}]


def test_empty_and_inverted_intervals(repo: Path) -> None:
    for start, end in ((BASE_US + HOUR, BASE_US + HOUR), (BASE_US + 2 * HOUR, BASE_US), (0, BASE_US)):
        assert list(latest_rows(SPEC, repo, at(start), at(end))) == []
        assert count_rows(SPEC, repo, at(start), at(end)) == 0
        keys = entity_keys(SPEC, repo, at(start), at(end))
        assert keys.num_rows == 0 and keys.schema == pa.schema([("driver_id", pa.int64())])


def test_batches_are_bounded_deterministic_and_sorted(tmp_path: Path) -> None:
    n = 1_000
    write(tmp_path / "data" / "stats.parquet", {
        "driver_id": pa.array([(i * 7) % n for i in range(2 * n)], pa.int64()),
        "event_timestamp": timestamps([BASE_US + i for i in range(2 * n)]),
        "trips": list(range(2 * n)),
    })
    spec = view_spec(features=[("trips", "Int64")])
    batches = list(latest_rows(spec, tmp_path, at(BASE_US), at(BASE_US + 2 * n), batch_rows=64))
    assert [b.num_rows for b in batches] == [64] * 15 + [40]
    table = pa.Table.from_batches(batches)
    assert table.column("driver_id").to_pylist() == list(range(n))
    assert all(row["trips"] >= n for row in table.to_pylist())  # the later of the two rows of each key
    again = pa.Table.from_batches(list(latest_rows(spec, tmp_path, at(BASE_US), at(BASE_US + 2 * n), batch_rows=64)))
    assert again.equals(table)


def test_latest_rows_streams(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", {
        "driver_id": pa.array(range(10_000), pa.int64()),
        "event_timestamp": timestamps([BASE_US] * 10_000),
        "trips": list(range(10_000)),
    })
    spec = view_spec(features=[("trips", "Int64")])
    stream = latest_rows(spec, tmp_path, at(BASE_US), at(BASE_US + 1), batch_rows=100)
    first = next(stream)
    assert first.num_rows == 100 and first.column(0).to_pylist() == list(range(100))
    stream.close()  # closing early releases the DuckDB connection


def test_the_newest_wins_and_ties_prefer_a_value_then_the_greater_list(tmp_path: Path) -> None:
    write(tmp_path / "data" / "stats.parquet", {
        "driver_id": [1, 1, 1, 2, 2, 2],
        "event_timestamp": timestamps([BASE_US] * 6),
        "tags": pa.array([["a"], None, ["a", None], ["b"], ["a", "z"], ["b", "a"]], pa.list_(pa.string())),
    })
    spec = view_spec(features=[("tags", "Array(String)")])
    rows = collect(spec, tmp_path, at(BASE_US), at(BASE_US + 1)).to_pylist()
    # Key 1: a value beats null; in lists a null element is greater than any value. Key 2: lexicographic.
    assert [r["tags"] for r in rows] == [["a", None], ["b", "a"]]


@pytest.mark.parametrize("which", ["start", "end"])
def test_naive_bounds_are_refused(repo: Path, which: str) -> None:
    naive = datetime(2024, 1, 1)
    bounds = {"start": at(BASE_US), "end": at(BASE_US + HOUR), which: naive}
    for call in (latest_rows, count_rows, entity_keys):
        with pytest.raises(NaiveTimestampError) as raised:
            call(SPEC, repo, bounds["start"], bounds["end"])
        assert f"{which}=2024-01-01T00:00:00 has no time zone" in str(raised.value)
        assert "tzinfo=timezone.utc" in str(raised.value)


def test_latest_rows_needs_typed_join_keys(repo: Path) -> None:
    with pytest.raises(ValueError, match="have no type"):
        latest_rows(view_spec(keys=[("driver_id", None)]), repo, at(BASE_US), at(BASE_US + 1))
