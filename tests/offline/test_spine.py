"""Spines: ``normalize_spine``, ``spine_digest`` and ``sample_spine``."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from feature_rollout.core.errors import EntityKeyError, NaiveTimestampError
from feature_rollout.offline import normalize_spine, sample_spine, spine_digest

from .builders import BASE_US, TS, at, timestamps, view_spec, write

MINUTE = 60_000_000


# --- normalize_spine --------------------------------------------------------------------------


def test_a_pandas_spine_keeps_its_columns_and_gets_utc_microseconds() -> None:
    df = pd.DataFrame({
        "driver_id": [3, 1],
        "event_timestamp": pd.to_datetime(["2024-01-01 01:00:00.000000", "2024-01-01 02:00:00.000001"]).tz_localize(
            "Europe/Paris"),
        "label": ["a", "b"],
    }, index=[10, 20])
    table = normalize_spine(df)
    assert table.column_names == ["driver_id", "event_timestamp", "label"]
    assert table.schema.field("event_timestamp").type == TS
    assert table.column("event_timestamp").to_pylist() == [at(BASE_US), at(BASE_US + 60 * MINUTE + 1)]
    assert table.column("driver_id").to_pylist() == [3, 1]


def test_an_arrow_spine_keeps_other_columns_untouched() -> None:
    spine = pa.table({
        "k": pa.array(["x"], pa.large_string()),
        "event_timestamp": timestamps([BASE_US], pa.timestamp("ns", tz="Asia/Tokyo")),
        "w": pa.array([1], pa.int8()),
    })
    table = normalize_spine(spine)
    assert table.schema == pa.schema([("k", pa.large_string()), ("event_timestamp", TS), ("w", pa.int8())])
    assert table.column("event_timestamp").to_pylist() == [at(BASE_US)]


def test_a_naive_pandas_spine_says_how_to_localize_it() -> None:
    df = pd.DataFrame({"driver_id": [1], "event_timestamp": pd.to_datetime(["2024-01-01"])})
    with pytest.raises(NaiveTimestampError) as raised:
        normalize_spine(df)
    assert "no time zone" in str(raised.value)
    assert 'df["event_timestamp"].dt.tz_localize("UTC")' in str(raised.value)


def test_a_naive_arrow_spine() -> None:
    spine = pa.table({"driver_id": [1], "event_timestamp": timestamps([BASE_US], pa.timestamp("us"))})
    with pytest.raises(NaiveTimestampError, match="event_timestamp"):
        normalize_spine(spine)


def test_a_spine_without_event_timestamp() -> None:
    with pytest.raises(EntityKeyError, match=r"has no 'event_timestamp' column \(columns: driver_id, ts\)"):
        normalize_spine(pa.table({"driver_id": [1], "ts": timestamps([BASE_US])}))


def test_an_event_timestamp_that_is_not_a_timestamp() -> None:
    with pytest.raises(EntityKeyError, match=r"holds (large_)?string, not timestamps.*to_datetime"):
        normalize_spine(pd.DataFrame({"driver_id": [1], "event_timestamp": ["2024-01-01T00:00:00Z"]}))


def test_something_that_is_not_a_table() -> None:
    with pytest.raises(TypeError, match="pandas.DataFrame or a pyarrow.Table"):
        normalize_spine([{"driver_id": 1}])


# --- spine_digest -----------------------------------------------------------------------------


def spine_table() -> pa.Table:
    return pa.table({
        "driver_id": pa.array([1, None, 3], pa.int64()),
        "city": pa.array(["a", "bé", None]),
        "embedding": pa.array([[1.0], None, []], pa.list_(pa.float32())),
        "event_timestamp": timestamps([BASE_US, BASE_US + 1, None]),
    })


def test_the_digest_ignores_chunking_and_metadata() -> None:
    table = spine_table()
    digest = spine_digest(table)
    assert len(digest) == 64 and int(digest, 16) >= 0
    rechunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 1), table.slice(2)])
    assert rechunked.column(0).num_chunks == 3
    assert spine_digest(rechunked) == digest
    assert spine_digest(table.replace_schema_metadata({"pandas": "{}"})) == digest
    assert spine_digest(pa.Table.from_batches(table.to_batches(max_chunksize=1))) == digest
    assert spine_digest(spine_table()) == digest  # stable across calls and objects


@pytest.mark.parametrize("change", [
    lambda t: t.take([1, 0, 2]),  # order
    lambda t: t.slice(0, 2),  # fewer rows
    lambda t: t.set_column(1, "city", pa.array(["a", "b", None])),  # one value
    lambda t: t.set_column(1, "city", pa.array(["a", "bé", ""])),  # null vs empty
    lambda t: t.set_column(1, "city", pa.array(["ab", "é", None])),  # where strings split
    lambda t: t.set_column(0, "driver_id", pa.array([1, 0, 3], pa.int64())),  # null vs 0
    lambda t: t.rename_columns(["driver", "city", "embedding", "event_timestamp"]),  # a name
    lambda t: t.set_column(0, "driver_id", pa.array([1, None, 3], pa.int32())),  # a type
    lambda t: t.set_column(2, "embedding", pa.array([[1.0], None, [0.0]], pa.list_(pa.float32()))),
])
def test_the_digest_changes_with_the_rows(change: object) -> None:
    table = spine_table()
    assert callable(change)
    assert spine_digest(change(table)) != spine_digest(table)


def test_the_digest_of_an_empty_spine() -> None:
    empty = spine_table().slice(0, 0)
    assert spine_digest(empty) == spine_digest(spine_table().schema.empty_table())
    assert spine_digest(empty) != spine_digest(spine_table().slice(0, 1))


# --- sample_spine -----------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    n = 500
    write(tmp_path / "data" / "stats.parquet", {
        "driver_id": pa.array([i % 50 if i % 97 else None for i in range(n)], pa.int64()),
        "event_timestamp": timestamps([BASE_US + (i // 50) * MINUTE for i in range(n)]),
        "value": list(range(n)),
    })
    # The same rows again in another file and order: a sample is of distinct (key, time) pairs.
    write(tmp_path / "data" / "stats2.parquet", {
        "driver_id": pa.array([i % 50 if i % 97 else None for i in reversed(range(n))], pa.int64()),
        "event_timestamp": timestamps([BASE_US + (i // 50) * MINUTE for i in reversed(range(n))]),
        "value": list(range(n)),
    })
    return tmp_path


SPEC = view_spec(path="data/stats*.parquet")


def test_a_sample_is_deterministic_sorted_and_of_distinct_pairs(repo: Path) -> None:
    first = sample_spine(SPEC, repo, size=40, seed=7)
    assert first.schema == pa.schema([("driver_id", pa.int64()), ("event_timestamp", TS)])
    assert first.num_rows == 40
    rows = [tuple(r.values()) for r in first.to_pylist()]
    assert rows == sorted(rows, key=lambda r: (r[1], r[0]))
    assert len(set(rows)) == 40
    assert None not in first.column("driver_id").to_pylist()
    again = sample_spine(SPEC, repo, size=40, seed=7)
    assert again.equals(first)
    assert spine_digest(again) == spine_digest(first)
    # Another file order gives the same sample.
    assert sample_spine(view_spec(path="data/stats2.parquet"), repo, size=40, seed=7).equals(first)


def test_the_seed_changes_the_sample_and_a_larger_size_gives_a_superset(repo: Path) -> None:
    small = sample_spine(SPEC, repo, size=20, seed=1)
    large = sample_spine(SPEC, repo, size=60, seed=1)
    other = sample_spine(SPEC, repo, size=20, seed=2)
    assert not other.equals(small)
    assert set(map(tuple, map(dict.values, small.to_pylist()))) <= set(map(tuple, map(dict.values, large.to_pylist())))


def test_a_sample_respects_its_window_and_is_capped_by_the_data(repo: Path) -> None:
    start, end = at(BASE_US + 2 * MINUTE), at(BASE_US + 4 * MINUTE)
    window = sample_spine(SPEC, repo, size=1_000, seed=3, start=start, end=end)
    times = window.column("event_timestamp").to_pylist()
    assert set(times) == {at(BASE_US + 2 * MINUTE), at(BASE_US + 3 * MINUTE)}
    assert window.num_rows == 99  # 2 minutes x 50 drivers, less the one null key
    assert sample_spine(SPEC, repo, size=0, seed=3).num_rows == 0
    assert sample_spine(SPEC, repo, size=10, seed=3, start=end, end=start).num_rows == 0


def test_sample_bounds_must_be_aware(repo: Path) -> None:
    with pytest.raises(NaiveTimestampError, match=r"start=2024-01-01T00:00:00 has no time zone"):
        sample_spine(SPEC, repo, size=1, seed=0, start=datetime(2024, 1, 1))
