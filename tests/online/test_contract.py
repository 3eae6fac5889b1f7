"""The online store contract (DESIGN §9), run on SQLite, PostgreSQL and Redis alike.

Newer-wins writes and their counts, idempotent materialization (same, overlapping and out-of-order
batches), exact round trips of every feature type, reads in key order with nulls for unknown keys,
counts, drops, a large batch, and errors that say what to do (without leaking a password).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from feature_rollout.arrow_types import CREATED_TS, EVENT_TS
from feature_rollout.config import OnlineStoreConfig
from feature_rollout.core.errors import (
    EntityKeyError,
    OnlineStoreError,
    OnlineStoreUnavailableError,
    OnlineTableMissing,
)
from feature_rollout.online import Column, OnlineStore, OnlineTable, open_online_store
from tests.online.conftest import KINDS, batch, keys_table

DRIVER = OnlineTable(
    "demo_driver_stats_v1",
    (Column("driver_id", "Int64"),),
    (Column("conv_rate", "Float32"), Column("trips", "Int64"), Column("city", "String")),
)


def row(driver_id: int, event: int, created: int = 0, **features: Any) -> dict[str, Any]:
    return {"driver_id": driver_id, EVENT_TS: event, CREATED_TS: created, **features}


def stored(store: OnlineStore, table: OnlineTable = DRIVER) -> list[dict[str, Any]]:
    return store.dump(table).to_pylist()  # type: ignore[no-any-return]


# --- tables -----------------------------------------------------------------------------------


def test_create_table_is_idempotent_and_exists_after(online_store):
    assert not online_store.table_exists(DRIVER.name)
    online_store.create_table(DRIVER)
    assert online_store.table_exists(DRIVER.name)
    assert online_store.write_batch(DRIVER, batch(DRIVER, [row(1, 10, conv_rate=0.5)])) == 1

    online_store.create_table(DRIVER)

    assert stored(online_store) == [row(1, 10, conv_rate=0.5, trips=None, city=None)]
    assert not online_store.table_exists("demo_driver_stats_v2")


@pytest.mark.parametrize(("other", "difference"), [
    (OnlineTable(DRIVER.name, DRIVER.join_keys, (Column("conv_rate", "Float64"), *DRIVER.features[1:])),
     "its conv_rate is Float32, not Float64"),
    (OnlineTable(DRIVER.name, DRIVER.join_keys, (*DRIVER.features, Column("acc_rate", "Float32"))),
     "it lacks acc_rate Float32"),
    (OnlineTable(DRIVER.name, DRIVER.join_keys, DRIVER.features[:2]), "it has city String in addition"),
    (OnlineTable(DRIVER.name, (Column("driver_id", "String"),), DRIVER.features),
     "its driver_id is Int64 (join key), not String (join key)"),
    (OnlineTable(DRIVER.name, (Column("driver_id", "Int64"), Column("trips", "Int64")),
                 (DRIVER.features[0], DRIVER.features[2])),
     "its trips is Int64, not Int64 (join key)"),
    (OnlineTable(DRIVER.name, DRIVER.join_keys, (Column("conv_rate", "Array(Float32)"), *DRIVER.features[1:])),
     "its conv_rate is Float32, not Array(Float32)"),
], ids=["type", "extra-feature", "missing-feature", "key-type", "key-set", "array"])
def test_create_table_of_another_shape_is_refused_and_changes_nothing(online_store, other, difference):
    online_store.create_table(DRIVER)
    online_store.write_batch(DRIVER, batch(DRIVER, [row(1, 10, conv_rate=0.5, trips=3, city="x")]))
    before = stored(online_store)

    with pytest.raises(OnlineStoreError) as raised:
        online_store.create_table(other)

    message = str(raised.value)
    assert f"'{DRIVER.name}' already exists" in message
    assert difference in message
    assert stored(online_store) == before


def test_drop_table_removes_rows_and_only_that_table(online_store):
    prefixed = OnlineTable(DRIVER.name + "_v2", DRIVER.join_keys, DRIVER.features)
    for table in (DRIVER, prefixed):
        online_store.create_table(table)
        online_store.write_batch(table, batch(table, [row(i, 10, trips=i) for i in range(1, 4)]))

    online_store.drop_table(DRIVER.name)
    online_store.drop_table(DRIVER.name)  # idempotent

    assert not online_store.table_exists(DRIVER.name)
    assert online_store.table_exists(prefixed.name)
    assert online_store.count(prefixed) == 3
    online_store.create_table(DRIVER)
    assert online_store.count(DRIVER) == 0
    assert stored(online_store) == []
    assert online_store.read(DRIVER, keys_table(DRIVER, [1]), ["trips"]).to_pylist() == [
        {"trips": None, EVENT_TS: None}]


def test_identifiers_are_quoted(online_store):
    table = OnlineTable("Select", (Column("order", "Int64"), Column("group", "String")),
                        (Column("from", "Float64"), Column("Where", "String")))
    online_store.create_table(table)
    rows = [{"order": 1, "group": "a", "from": 1.5, "Where": "x", EVENT_TS: 1, CREATED_TS: 1}]

    assert online_store.write_batch(table, batch(table, rows)) == 1

    assert online_store.dump(table).to_pylist() == rows
    assert online_store.read(table, keys_table(table, [(1, "a")]), ["Where", "from"]).to_pylist() == [
        {"Where": "x", "from": 1.5, EVENT_TS: 1}]


def test_operations_on_a_missing_table_say_so(online_store):
    keys = keys_table(DRIVER, [1])
    operations = [
        lambda: online_store.write_batch(DRIVER, batch(DRIVER, [row(1, 10)])),
        lambda: online_store.read(DRIVER, keys, ["trips"]),
        lambda: online_store.count(DRIVER),
        lambda: online_store.count_present(DRIVER, keys),
        lambda: online_store.dump(DRIVER),
    ]
    for operation in operations:
        with pytest.raises(OnlineTableMissing, match=f"'{DRIVER.name}' does not exist") as raised:
            operation()
        assert isinstance(raised.value, OnlineStoreError) and raised.value.table == DRIVER.name
        assert "Materialize the version to create and fill it again" in str(raised.value)
    assert not online_store.table_exists(DRIVER.name)


# --- newer-wins -------------------------------------------------------------------------------


def test_newer_wins(online_store):
    online_store.create_table(DRIVER)
    write = lambda *rows: online_store.write_batch(DRIVER, batch(DRIVER, rows))  # noqa: E731
    assert write(row(1, 100, 5, conv_rate=0.5, trips=1, city="a")) == 1

    assert write(row(1, 99, 50, conv_rate=0.1, trips=2, city="older event")) == 0
    assert write(row(1, 100, 5, conv_rate=0.2, trips=3, city="equal")) == 0
    assert write(row(1, 100, 4, conv_rate=0.3, trips=4, city="equal event, older created")) == 0
    assert stored(online_store) == [row(1, 100, 5, conv_rate=0.5, trips=1, city="a")]

    # at equal event time the later created time wins, and a null replaces a value
    assert write(row(1, 100, 6, conv_rate=0.25, trips=5)) == 1
    assert stored(online_store) == [row(1, 100, 6, conv_rate=0.25, trips=5, city=None)]

    # a newer event wins whatever its created time
    assert write(row(1, 101, 0, conv_rate=0.75, trips=6, city="d")) == 1
    assert stored(online_store) == [row(1, 101, 0, conv_rate=0.75, trips=6, city="d")]


def test_newer_wins_compares_the_whole_int64_range(online_store):
    # 2**62 + 1 and 2**62 are the same double: a store comparing floats would get these wrong.
    online_store.create_table(DRIVER)
    big = 2**62
    write = lambda *rows: online_store.write_batch(DRIVER, batch(DRIVER, rows))  # noqa: E731
    assert write(row(1, big + 1, 0, trips=1), row(2, -5, big + 1, trips=1), row(3, -(2**63), 2**63 - 1, trips=1)) == 3

    assert write(row(1, big, 9, trips=2), row(2, -5, big, trips=2), row(3, -(2**63), 2**63 - 2, trips=2)) == 0
    assert write(row(1, big + 2, 0, trips=3), row(2, -4, 0, trips=3), row(3, -(2**63) + 1, 0, trips=3)) == 3
    assert write(row(2, -10, 0, trips=4)) == 0

    assert [(r["driver_id"], r[EVENT_TS], r["trips"]) for r in stored(online_store)] == [
        (1, big + 2, 3), (2, -4, 3), (3, -(2**63) + 1, 3)]


def test_write_counts_rows_inserted_or_replaced(online_store):
    online_store.create_table(DRIVER)
    first = [row(i, 10, 1, trips=i) for i in range(1, 6)]
    assert online_store.write_batch(DRIVER, batch(DRIVER, first)) == 5
    assert online_store.write_batch(DRIVER, batch(DRIVER, first)) == 0

    mixed = [row(1, 11, 1, trips=100), row(2, 9, 1, trips=200), row(3, 10, 1, trips=300), row(4, 10, 2, trips=400),
             row(6, 1, 1, trips=600)]
    assert online_store.write_batch(DRIVER, mixed_batch := batch(DRIVER, mixed)) == 3
    assert online_store.write_batch(DRIVER, mixed_batch.to_batches()[0]) == 0  # a RecordBatch is fine too

    assert {r["driver_id"]: r["trips"] for r in stored(online_store)} == {1: 100, 2: 2, 3: 3, 4: 400, 5: 5, 6: 600}
    assert online_store.write_batch(DRIVER, batch(DRIVER, [])) == 0


# Four versions of 30 entities; materializing [start, end) writes the latest version per entity in it.
HISTORY = [row(key, event, created=(key * event) % 3, conv_rate=key + event / 8, trips=event,
               city=None if (key + event) % 5 == 0 else f"c{key}-{event}")
           for key in range(1, 31) for event in range(key % 4, 4 + key % 3)]


def interval(start: int, end: int) -> list[dict[str, Any]]:
    latest: dict[int, dict[str, Any]] = {}
    for r in HISTORY:
        if start <= r[EVENT_TS] < end:
            best = latest.get(r["driver_id"])
            if best is None or (r[EVENT_TS], r[CREATED_TS]) > (best[EVENT_TS], best[CREATED_TS]):
                latest[r["driver_id"]] = r
    return [latest[k] for k in sorted(latest)]


@pytest.mark.parametrize("intervals", [
    [(0, 99), (0, 99)],
    [(0, 3), (2, 99)],
    [(3, 99), (0, 3)],
    [(5, 6), (4, 5), (3, 4), (2, 3), (1, 2), (0, 1)],
    [(0, 2), (1, 5), (0, 99), (2, 3)],
], ids=["twice", "overlapping", "out-of-order", "one-by-one-backwards", "mixed"])
def test_materialization_is_idempotent(online_store, intervals):
    clean = OnlineTable("clean", DRIVER.join_keys, DRIVER.features)
    for table in (DRIVER, clean):
        online_store.create_table(table)
    assert online_store.write_batch(clean, batch(clean, interval(0, 99))) == 30

    for start, end in intervals:
        online_store.write_batch(DRIVER, batch(DRIVER, interval(start, end)))

    expected = batch(DRIVER, interval(0, 99))
    assert online_store.dump(DRIVER).equals(expected)
    assert online_store.dump(clean).equals(expected)


# --- types ------------------------------------------------------------------------------------

PRIMITIVES = ("Bytes", "String", "Bool", "Int32", "Int64", "Float32", "Float64", "UnixTimestamp")
EVERY_TYPE = OnlineTable(
    "every_type",
    (Column("id", "Int64"),),
    tuple(Column(f"f_{t.lower()}", t) for t in PRIMITIVES)
    + tuple(Column(f"a_{t.lower()}", f"Array({t})") for t in PRIMITIVES),
)


def ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def every_type_rows() -> list[dict[str, Any]]:
    typical = {
        "f_bytes": b"\x00\x01binary\xff", "f_string": "driver", "f_bool": True, "f_int32": 42, "f_int64": 2**40,
        "f_float32": 0.1, "f_float64": 0.1, "f_unixtimestamp": ts(2024, 5, 17, 12, 30, 45, 123456),
        "a_bytes": [b"a", b"\x00"], "a_string": ["x", "y"], "a_bool": [True, False], "a_int32": [1, -2],
        "a_int64": [2**50, -(2**50)], "a_float32": [0.25, 0.1, -1.5], "a_float64": [1e-300, 2.5],
        "a_unixtimestamp": [ts(2024, 1, 1), ts(1999, 12, 31, 23, 59, 59, 999999)],
    }
    edges = {
        "f_bytes": b"", "f_string": "", "f_bool": False, "f_int32": -(2**31), "f_int64": -(2**63),
        "f_float32": float("-inf"), "f_float64": 5e-324, "f_unixtimestamp": ts(1969, 12, 31, 23, 59, 59, 999999),
        "a_bytes": [b"", None, b"\xff" * 3], "a_string": ["", None, 'a,"b"', "{c}", "NULL", "é ☃\n\\"],
        "a_bool": [None, True], "a_int32": [], "a_int64": [None], "a_float32": [float("inf"), None, -0.0],
        "a_float64": [float("-inf"), 1.7976931348623157e308], "a_unixtimestamp": [None, ts(1900, 1, 1)],
    }
    extremes = {
        "f_bytes": bytes(range(256)), "f_string": 'quote " back\\slash, tab\t, newline\n, ☃ and \U0001f680',
        "f_bool": None, "f_int32": 2**31 - 1, "f_int64": 2**63 - 1, "f_float32": 3.4028234663852886e38,
        "f_float64": -1.7976931348623157e308, "f_unixtimestamp": ts(9999, 12, 31, 23, 59, 59, 999999),
        "a_bytes": [], "a_string": [], "a_bool": [], "a_int32": [2**31 - 1, -(2**31)], "a_int64": [2**63 - 1],
        "a_float32": [1e-45], "a_float64": [], "a_unixtimestamp": [],
    }
    nulls: dict[str, Any] = {}
    return [{"id": i, **values, EVENT_TS: 1_700_000_000_000_000 + i, CREATED_TS: i}
            for i, values in enumerate([typical, edges, extremes, nulls], start=1)]


def test_every_type_round_trips_exactly(online_store):
    online_store.create_table(EVERY_TYPE)
    expected = batch(EVERY_TYPE, every_type_rows())

    assert online_store.write_batch(EVERY_TYPE, expected) == 4

    dumped = online_store.dump(EVERY_TYPE)
    assert dumped.schema.equals(EVERY_TYPE.arrow_schema())
    assert dumped.to_pylist() == expected.to_pylist()
    assert dumped.equals(expected)
    features = EVERY_TYPE.feature_names[::-1]
    read = online_store.read(EVERY_TYPE, keys_table(EVERY_TYPE, [4, 3, 2, 1, 5]), features)
    assert read.column_names == [*features, EVENT_TS]
    assert read.to_pylist() == [{**{f: r.get(f) for f in features}, EVENT_TS: r.get(EVENT_TS)}
                                for r in [*expected.to_pylist()[::-1], {}]]
    assert read.schema.field("f_float32").type == pa.float32()
    assert read.schema.field("a_unixtimestamp").type == pa.list_(pa.timestamp("us", tz="UTC"))


def test_negative_zero_and_nan(online_store):
    """PostgreSQL and Redis keep both. SQLite stores a REAL -0.0 as the integer 0 and a NaN as NULL (SQLite's own
    rules, pinned here so that a change is noticed); arrays, which SQLite keeps as JSON text, keep both there too."""
    online_store.create_table(EVERY_TYPE)
    nan = float("nan")
    online_store.write_batch(EVERY_TYPE, batch(EVERY_TYPE, [{
        "id": 1, "f_float64": -0.0, "f_float32": nan, "a_float64": [-0.0, nan], EVENT_TS: 1, CREATED_TS: 1}]))

    values = online_store.read(EVERY_TYPE, keys_table(EVERY_TYPE, [1]), ["f_float64", "f_float32", "a_float64"])

    scalar_zero, scalar_nan, (array_zero, array_nan) = [values.column(i).to_pylist()[0] for i in range(3)]
    assert repr(array_zero) == "-0.0"
    assert repr(array_nan) == "nan"
    if online_store.kind == "sqlite":
        assert (repr(scalar_zero), scalar_nan) == ("0.0", None)
    else:
        assert (repr(scalar_zero), repr(scalar_nan)) == ("-0.0", "nan")


MULTI_KEY = OnlineTable("multi_key", (Column("region", "String"), Column("driver_id", "Int64")),
                        (Column("trips", "Int64"),))
ODD_KEYS = OnlineTable("odd_keys", (Column("token", "Bytes"), Column("day", "UnixTimestamp"), Column("flag", "Bool")),
                       (Column("trips", "Int64"),))


@pytest.mark.parametrize(("table", "keys", "unknown"), [
    (MULTI_KEY, [("eu", 1), ("eu", 2), ("us", 1), ("", 2)], [("us", 2), ("EU", 1), ("", 1)]),
    (ODD_KEYS, [(b"\x00a", ts(2024, 1, 1), True), (b"\x00a", ts(2024, 1, 1), False), (b"", ts(1969, 1, 1), True)],
     [(b"\x00", ts(2024, 1, 1), True), (b"\x00a", ts(2024, 1, 2), True)]),
], ids=["string-int", "bytes-timestamp-bool"])
def test_multi_column_join_keys(online_store, table, keys, unknown):
    online_store.create_table(table)
    rows = [{**dict(zip(table.key_names, key, strict=True)), "trips": i, EVENT_TS: 10, CREATED_TS: 0}
            for i, key in enumerate(keys)]
    assert online_store.write_batch(table, batch(table, rows)) == len(keys)
    # the same entity again, newer: replaces, and must not become a second row
    assert online_store.write_batch(table, batch(table, [{**rows[0], "trips": 99, EVENT_TS: 11}])) == 1

    asked = [unknown[0], keys[1], keys[0], unknown[1], keys[1]]
    read = online_store.read(table, keys_table(table, asked), ["trips"])

    assert read.column("trips").to_pylist() == [None, 1, 99, None, 1]
    assert online_store.count(table) == len(keys)
    assert online_store.count_present(table, keys_table(table, asked)) == 2
    expected = sorted([{**r, "trips": 99, EVENT_TS: 11} if r is rows[0] else r for r in rows],
                      key=lambda r: tuple(r[k] for k in table.key_names))
    assert online_store.dump(table).to_pylist() == expected


# --- reads and counts -------------------------------------------------------------------------


def test_read_follows_key_order_with_nulls_for_unknown_keys(online_store):
    online_store.create_table(DRIVER)
    online_store.write_batch(DRIVER, batch(DRIVER, [row(i, 100 + i, conv_rate=i / 4, trips=i, city=f"c{i}")
                                                    for i in range(1, 6)]))

    read = online_store.read(DRIVER, keys_table(DRIVER, [3, 999, 1, 3, -7]), ["city", "conv_rate"])

    assert read.schema == pa.schema([("city", pa.string()), ("conv_rate", pa.float32()), (EVENT_TS, pa.int64())])
    assert read.to_pylist() == [
        {"city": "c3", "conv_rate": 0.75, EVENT_TS: 103},
        {"city": None, "conv_rate": None, EVENT_TS: None},
        {"city": "c1", "conv_rate": 0.25, EVENT_TS: 101},
        {"city": "c3", "conv_rate": 0.75, EVENT_TS: 103},
        {"city": None, "conv_rate": None, EVENT_TS: None},
    ]


def test_read_edge_cases(online_store):
    online_store.create_table(DRIVER)
    online_store.write_batch(DRIVER, batch(DRIVER, [row(1, 10, trips=7)]))

    empty = online_store.read(DRIVER, keys_table(DRIVER, []), ["trips"])
    assert empty.num_rows == 0
    assert empty.schema == pa.schema([("trips", pa.int64()), (EVENT_TS, pa.int64())])
    # keys of another integer type, with extra columns (a spine), are fine
    spine = pa.table({"event_timestamp": [1, 2], "driver_id": pa.array([1, 2], pa.int32())})
    assert online_store.read(DRIVER, spine, ["trips"]).column("trips").to_pylist() == [7, None]
    assert online_store.read(DRIVER, keys_table(DRIVER, [1]), []).to_pylist() == [{EVENT_TS: 10}]
    with pytest.raises(OnlineStoreError, match="has no feature.*nope.*it has conv_rate, trips, city"):
        online_store.read(DRIVER, keys_table(DRIVER, [1]), ["trips", "nope"])
    with pytest.raises(EntityKeyError, match="driver_id"):
        online_store.read(DRIVER, pa.table({"rider_id": [1]}), ["trips"])


def test_count_and_count_present(online_store):
    online_store.create_table(DRIVER)
    assert online_store.count(DRIVER) == 0
    assert online_store.count_present(DRIVER, keys_table(DRIVER, [1, 2])) == 0
    online_store.write_batch(DRIVER, batch(DRIVER, [row(i, 10) for i in range(1, 8)]))

    assert online_store.count(DRIVER) == 7
    assert online_store.count_present(DRIVER, keys_table(DRIVER, [1, 1, 2, 999, 7, 2])) == 3
    assert online_store.count_present(DRIVER, keys_table(DRIVER, [])) == 0


def test_a_large_batch_round_trips(online_store):
    online_store.create_table(DRIVER)
    n = 50_000
    ids = pa.array(range(n, 0, -1), pa.int64())  # descending: the dump must sort
    data = pa.table({
        "driver_id": ids,
        "conv_rate": pa.array([(i % 1000) / 8 if i % 7 else None for i in range(n, 0, -1)], pa.float32()),
        "trips": pa.array(range(n), pa.int64()),
        "city": pa.array([f"city-{i % 97}" for i in range(n)]),
        EVENT_TS: pa.array([1_700_000_000_000_000 + i for i in range(n)], pa.int64()),
        CREATED_TS: pa.array([7] * n, pa.int64()),
    })

    assert online_store.write_batch(DRIVER, data) == n

    assert online_store.count(DRIVER) == n
    assert online_store.dump(DRIVER).equals(data.sort_by("driver_id"))
    sample = [n, 1, 12_345, n + 1, 777]
    read = online_store.read(DRIVER, keys_table(DRIVER, sample), ["trips"])
    assert read.column("trips").to_pylist() == [0, n - 1, n - 12_345, None, n - 777]
    assert online_store.count_present(DRIVER, keys_table(DRIVER, list(range(n - 99, n + 101)))) == 100


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(("bad", "error", "message"), [
    (lambda b: b.drop_columns(["trips"]), OnlineStoreError, "lacks column.*trips"),
    (lambda b: b.set_column(0, "driver_id", pa.array([1, None], pa.int64())), EntityKeyError, "null join key"),
    (lambda b: b.set_column(4, EVENT_TS, pa.array([None, 1], pa.int64())), OnlineStoreError, "nulls in _event_ts"),
    (lambda b: b.set_column(1, "conv_rate", pa.array(["fast", "slow"])), OnlineStoreError, "does not match"),
], ids=["missing-column", "null-key", "null-event-time", "wrong-type"])
def test_bad_batches_are_refused_and_change_nothing(online_store, bad, error, message):
    online_store.create_table(DRIVER)
    online_store.write_batch(DRIVER, batch(DRIVER, [row(9, 1, trips=9)]))
    good = batch(DRIVER, [row(1, 10, conv_rate=0.5, trips=1), row(2, 10, trips=2)])

    with pytest.raises(error, match=message):
        online_store.write_batch(DRIVER, bad(good))

    assert stored(online_store) == [row(9, 1, trips=9, conv_rate=None, city=None)]


def test_rows_outlive_the_store_object(online_config):
    first = open_online_store(online_config)
    first.create_table(DRIVER)
    first.write_batch(DRIVER, batch(DRIVER, [row(1, 10, trips=3)]))
    first.close()

    second = open_online_store(online_config)
    try:
        assert second.table_exists(DRIVER.name)
        assert second.read(DRIVER, keys_table(DRIVER, [1]), ["trips"]).column("trips").to_pylist() == [3]
        second.close()
        # a closed store opens again on its next operation
        assert second.count(DRIVER) == 1
    finally:
        second.close()


# --- unreachable stores -----------------------------------------------------------------------

SECRET = "s3cr3t-Pa55"
UNREACHABLE = {
    "sqlite": OnlineStoreConfig("sqlite", "/proc/nope/online.db"),
    "postgres": OnlineStoreConfig("postgres", f"postgresql+psycopg://feast:{SECRET}@127.0.0.1:1/features",
                                  {"connect_timeout": 2}),
    "redis": OnlineStoreConfig("redis", f"redis://default:{SECRET}@127.0.0.1:1/0", {"connect_timeout": 2}),
}
SHOWN_AS = {"sqlite": "/proc/nope/online.db", "postgres": "postgresql+psycopg://feast:***@127.0.0.1:1/features",
            "redis": "redis://default:***@127.0.0.1:1/0"}


@pytest.mark.parametrize("kind", KINDS)
def test_an_unreachable_store_says_what_to_check_without_the_password(kind):
    store = open_online_store(UNREACHABLE[kind])  # no I/O yet: this must not raise
    keys = keys_table(DRIVER, [1])
    operations = [
        lambda: store.table_exists(DRIVER.name),
        lambda: store.create_table(DRIVER),
        lambda: store.write_batch(DRIVER, batch(DRIVER, [row(1, 10)])),
        lambda: store.read(DRIVER, keys, ["trips"]),
        lambda: store.count(DRIVER),
        lambda: store.drop_table(DRIVER.name),
    ]
    for operation in operations:
        with pytest.raises(OnlineStoreUnavailableError) as raised:
            operation()
        message = str(raised.value)
        assert SHOWN_AS[kind] in message
        assert SECRET not in message
        assert "Check" in message
    store.close()
