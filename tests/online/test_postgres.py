"""The PostgreSQL store's own promises: typed columns in the search_path's schema, COPY encoding, concurrent
creation, duplicate keys in a batch, and recovery after the server drops the connection."""

from __future__ import annotations

import threading

import psycopg
import pytest

from feature_rollout.core.errors import OnlineStoreError, OnlineStoreUnavailableError
from feature_rollout.online.postgres import PostgresOnlineStore, libpq_url
from tests.online.conftest import batch, keys_table
from tests.online.test_contract import DRIVER, EVERY_TYPE, row


@pytest.fixture
def store(pg_schema_url):
    store = PostgresOnlineStore(pg_schema_url)
    yield store
    store.close()


def admin(url: str) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), autocommit=True)


def test_columns_are_typed_in_the_search_path_schema(store, pg_schema_url):
    store.create_table(EVERY_TYPE)

    with admin(pg_schema_url) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a "
            "WHERE a.attrelid = format('%%I.%%I', %s::text, 'every_type')::regclass AND a.attnum > 0", (schema,),
        ).fetchall()
        key = conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = "
                           "format('%%I.every_type', %s::text)::regclass AND contype = 'p'", (schema,)).fetchone()
    assert schema.startswith("t_")
    types = {name: dtype for name, dtype, _ in rows}
    assert types == {
        "id": "bigint", "f_bytes": "bytea", "f_string": "text", "f_bool": "boolean", "f_int32": "integer",
        "f_int64": "bigint", "f_float32": "real", "f_float64": "double precision",
        "f_unixtimestamp": "timestamp with time zone",
        "a_bytes": "bytea[]", "a_string": "text[]", "a_bool": "boolean[]", "a_int32": "integer[]",
        "a_int64": "bigint[]", "a_float32": "real[]", "a_float64": "double precision[]",
        "a_unixtimestamp": "timestamp with time zone[]", "_event_ts": "bigint", "_created_ts": "bigint",
    }
    assert key == ("PRIMARY KEY (id)",)


def test_duplicate_keys_in_one_batch_are_refused(store):
    store.create_table(DRIVER)
    store.write_batch(DRIVER, batch(DRIVER, [row(1, 1, trips=1)]))

    with pytest.raises(OnlineStoreError, match="has an entity key more than once"):
        store.write_batch(DRIVER, batch(DRIVER, [row(2, 10, trips=2), row(2, 11, trips=3)]))

    assert store.dump(DRIVER).column("driver_id").to_pylist() == [1]


def test_concurrent_creation_of_one_table(pg_schema_url):
    stores = [PostgresOnlineStore(pg_schema_url) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def create(store: PostgresOnlineStore) -> None:
        try:
            start.wait()
            store.create_table(DRIVER)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=create, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()

    assert errors == []
    with admin(pg_schema_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = %s", (DRIVER.name,)).fetchone() == (1,)


def test_a_dropped_connection_is_reported_then_reopened(store, pg_schema_url):
    store.create_table(DRIVER)
    store.write_batch(DRIVER, batch(DRIVER, [row(1, 10, trips=1)]))
    assert store._conn is not None
    with admin(pg_schema_url) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (store._conn.info.backend_pid,))

    with pytest.raises(OnlineStoreUnavailableError, match="Cannot reach the PostgreSQL online store"):
        store.count(DRIVER)

    assert store.read(DRIVER, keys_table(DRIVER, [1]), ["trips"]).column("trips").to_pylist() == [1]


def test_reads_leave_no_transaction_open(store, pg_schema_url):
    store.create_table(DRIVER)
    store.read(DRIVER, keys_table(DRIVER, [1]), ["trips"])
    store.count(DRIVER)
    assert store._conn is not None
    # an idle-in-transaction reader would block DROP TABLE (prune) from another session
    with admin(pg_schema_url) as conn:
        conn.execute("SET lock_timeout = '2s'")
        conn.execute(f'DROP TABLE "{DRIVER.name}"')
    assert not store.table_exists(DRIVER.name)


def test_concurrent_writers_of_one_empty_table_converge_to_newer_wins(store, pg_schema_url):
    """Mapped backfill chunks write one version's table at once: the writer lock makes the empty-table COPY
    and MERGE safe, and the result is newer-wins whatever the order."""
    store.create_table(DRIVER)
    older = batch(DRIVER, [row(k, 10, trips=1) for k in range(500)])
    newer = batch(DRIVER, [row(k, 20, trips=2) for k in range(250, 750)])
    other = PostgresOnlineStore(pg_schema_url)
    errors: list[BaseException] = []

    def write(target, data):
        try:
            target.write_batch(DRIVER, data)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=write, args=(store, older)), threading.Thread(target=write, args=(other, newer))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.close()
    assert errors == []
    dumped = store.dump(DRIVER)
    assert dumped.num_rows == 750
    trips = dict(zip(dumped.column("driver_id").to_pylist(), dumped.column("trips").to_pylist(), strict=True))
    assert {trips[k] for k in range(250)} == {1} and {trips[k] for k in range(250, 750)} == {2}
