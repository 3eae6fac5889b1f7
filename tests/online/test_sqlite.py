"""The SQLite store's own promises: typed columns, WAL, the shape catalog, chunked key lists, shared use."""

from __future__ import annotations

import sqlite3
import threading

import pyarrow as pa
import pytest

from feature_rollout.arrow_types import CREATED_TS, EVENT_TS
from feature_rollout.core.errors import OnlineStoreError
from feature_rollout.online.sqlite import CATALOG, SqliteOnlineStore
from tests.online.conftest import batch, keys_table
from tests.online.test_contract import DRIVER, EVERY_TYPE, every_type_rows, row


@pytest.fixture
def store(tmp_path):
    store = SqliteOnlineStore(tmp_path / "deep" / "er" / "online.db")
    yield store
    store.close()


def test_the_file_has_typed_columns_in_wal_mode(store, tmp_path):
    store.create_table(EVERY_TYPE)
    store.write_batch(EVERY_TYPE, batch(EVERY_TYPE, every_type_rows()[:1]))

    with sqlite3.connect(tmp_path / "deep" / "er" / "online.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        columns = {name: (dtype, pk) for _, name, dtype, _, _, pk in conn.execute("PRAGMA table_info(every_type)")}
        stored = conn.execute("SELECT f_bool, f_unixtimestamp, a_float32, typeof(f_float32), a_bytes "
                              "FROM every_type").fetchone()
        catalog = conn.execute(f"SELECT name FROM {CATALOG}").fetchall()
    assert columns["id"] == ("INTEGER", 1)
    assert {name: dtype for name, (dtype, _) in columns.items() if name.startswith("f_")} == {
        "f_bytes": "BLOB", "f_string": "TEXT", "f_bool": "INTEGER", "f_int32": "INTEGER", "f_int64": "INTEGER",
        "f_float32": "REAL", "f_float64": "REAL", "f_unixtimestamp": "INTEGER"}
    assert {dtype for name, (dtype, _) in columns.items() if name.startswith("a_")} == {"TEXT"}
    assert columns[EVENT_TS] == columns[CREATED_TS] == ("INTEGER", 0)
    # Bool as 0/1, UnixTimestamp as integer microseconds, arrays as JSON (Bytes elements in base64)
    assert stored == (1, 1_715_949_045_123_456, "[0.25,0.10000000149011612,-1.5]", "real", '["YQ==","AA=="]')
    assert catalog == [("every_type",)]


def test_a_table_not_made_by_the_store_is_refused(store, tmp_path):
    store.table_exists("x")  # opens the file
    with sqlite3.connect(tmp_path / "deep" / "er" / "online.db") as conn:
        conn.execute(f'CREATE TABLE "{DRIVER.name}" (driver_id INTEGER PRIMARY KEY, note TEXT)')
        conn.execute(f"INSERT INTO \"{DRIVER.name}\" VALUES (1, 'keep me')")

    with pytest.raises(OnlineStoreError, match="was not created by feature-rollout"):
        store.create_table(DRIVER)

    with sqlite3.connect(tmp_path / "deep" / "er" / "online.db") as conn:
        assert conn.execute(f'SELECT * FROM "{DRIVER.name}"').fetchall() == [(1, "keep me")]


def test_many_keys_are_read_in_chunks_in_order(store):
    store.create_table(DRIVER)
    store.write_batch(DRIVER, batch(DRIVER, [row(i, 10, trips=i * 10) for i in range(50)]))
    assert store._conn is not None
    store._conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 7)  # 3 keys of (ord, driver_id) per query

    asked = [49, 3, 100, 3, 0, 7, 8, 9, 48, -1]
    read = store.read(DRIVER, keys_table(DRIVER, asked), ["trips"])

    assert read.column("trips").to_pylist() == [490, 30, None, 30, 0, 70, 80, 90, 480, None]
    assert store.count_present(DRIVER, keys_table(DRIVER, asked)) == 7  # 49, 3, 0, 7, 8, 9, 48


def test_one_store_object_serves_several_threads(store):
    store.create_table(DRIVER)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for step in range(20):
                key = worker * 100 + step
                store.write_batch(DRIVER, batch(DRIVER, [row(key, 10, trips=key)]))
                assert store.read(DRIVER, keys_table(DRIVER, [key]), ["trips"]).column("trips").to_pylist() == [key]
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert store.count(DRIVER) == 80


def test_a_failed_write_rolls_back_and_the_store_goes_on(store):
    store.create_table(DRIVER)
    store.write_batch(DRIVER, batch(DRIVER, [row(1, 10, trips=1)]))
    # a trigger makes the second row of the next batch fail half-way through executemany
    assert store._conn is not None
    store._conn.execute(f'CREATE TRIGGER no_twos BEFORE INSERT ON "{DRIVER.name}" WHEN NEW.driver_id = 2 '
                        "BEGIN SELECT RAISE(ABORT, 'no twos'); END")

    with pytest.raises(sqlite3.IntegrityError, match="no twos"):
        store.write_batch(DRIVER, batch(DRIVER, [row(1, 11, trips=11), row(2, 10, trips=2)]))

    assert store.dump(DRIVER).column("trips").to_pylist() == [1]
    assert store.write_batch(DRIVER, batch(DRIVER, [row(3, 10, trips=3)])) == 1


def test_in_memory_database(tmp_path):
    store = SqliteOnlineStore(":memory:")
    store.create_table(DRIVER)
    assert store.write_batch(DRIVER, batch(DRIVER, [row(1, 10, trips=1)])) == 1
    assert store.read(DRIVER, pa.table({"driver_id": [1]}), ["trips"]).column("trips").to_pylist() == [1]
    store.close()
