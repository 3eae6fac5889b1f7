"""The Redis store's own promises: the key layout, absent fields for nulls, recovery when the server forgets
the script, and a key prefix that is matched literally."""

from __future__ import annotations

import json

import pytest
import redis

from feature_rollout.arrow_types import CREATED_TS, EVENT_TS
from feature_rollout.core.errors import OnlineStoreError
from feature_rollout.online import Column, OnlineTable
from feature_rollout.online.redis import RedisOnlineStore
from tests.conftest import REDIS_URL
from tests.online.conftest import batch, keys_table
from tests.online.test_contract import DRIVER, row

MULTI_KEY = OnlineTable("multi", (Column("region", "String"), Column("token", "Bytes")), (Column("trips", "Int64"),))


@pytest.fixture
def client():
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def store(redis_prefix):
    store = RedisOnlineStore(REDIS_URL, key_prefix=redis_prefix)
    yield store
    store.close()


def test_key_layout(store, client, redis_prefix):
    store.create_table(DRIVER)
    store.create_table(MULTI_KEY)
    store.write_batch(DRIVER, batch(DRIVER, [row(7, 10, 2, conv_rate=0.5, trips=None, city="é")]))
    store.write_batch(MULTI_KEY, batch(MULTI_KEY, [{"region": "eu", "token": b"\x00", "trips": 1, EVENT_TS: 1,
                                                    CREATED_TS: 1}]))

    assert json.loads(client.get(f"{redis_prefix}:{DRIVER.name}")) == {
        "join_keys": [["driver_id", "Int64"]],
        "features": [["conv_rate", "Float32"], ["trips", "Int64"], ["city", "String"]]}
    # a null feature is an absent field; values are text
    assert client.hgetall(f"{redis_prefix}:{DRIVER.name}:[7]") == {
        b"conv_rate": b"0.5", b"city": "é".encode(), EVENT_TS.encode(): b"10", CREATED_TS.encode(): b"2"}
    assert client.exists(f'{redis_prefix}:multi:["eu","AA=="]') == 1
    assert sorted(client.scan_iter(match=f"{redis_prefix}:*")) == sorted([
        f"{redis_prefix}:{DRIVER.name}".encode(), f"{redis_prefix}:{DRIVER.name}:[7]".encode(),
        f"{redis_prefix}:multi".encode(), f'{redis_prefix}:multi:["eu","AA=="]'.encode()])


def test_a_feature_that_becomes_null_loses_its_field(store, client, redis_prefix):
    store.create_table(DRIVER)
    store.write_batch(DRIVER, batch(DRIVER, [row(1, 10, trips=5, city="x")]))
    store.write_batch(DRIVER, batch(DRIVER, [row(1, 11, trips=6)]))

    assert set(client.hkeys(f"{redis_prefix}:{DRIVER.name}:[1]")) == {b"trips", EVENT_TS.encode(), CREATED_TS.encode()}


def test_writes_survive_a_script_flush(store, client):
    store.create_table(DRIVER)
    assert store.write_batch(DRIVER, batch(DRIVER, [row(1, 10, trips=1)])) == 1
    client.script_flush()

    assert store.write_batch(DRIVER, batch(DRIVER, [row(1, 11, trips=2), row(2, 10, trips=3)])) == 2

    assert store.read(DRIVER, keys_table(DRIVER, [1, 2]), ["trips"]).column("trips").to_pylist() == [2, 3]


def test_the_key_prefix_is_matched_literally(redis_prefix):
    # an unescaped "?" in the SCAN pattern would also match the keys of the other prefix
    wild, plain = RedisOnlineStore(REDIS_URL, key_prefix=f"{redis_prefix}?"), \
        RedisOnlineStore(REDIS_URL, key_prefix=f"{redis_prefix}z")
    try:
        for store, n in ((wild, 2), (plain, 3)):
            store.create_table(DRIVER)
            store.write_batch(DRIVER, batch(DRIVER, [row(i, 10) for i in range(n)]))

        assert (wild.count(DRIVER), plain.count(DRIVER)) == (2, 3)
        assert wild.dump(DRIVER).num_rows == 2
        wild.drop_table(DRIVER.name)
        assert plain.count(DRIVER) == 3
    finally:
        wild.drop_table(DRIVER.name)
        plain.drop_table(DRIVER.name)
        wild.close()
        plain.close()


def test_a_prefix_with_a_colon_is_refused():
    with pytest.raises(OnlineStoreError, match="key_prefix 'a:b' must be non-empty and contain no ':'"):
        RedisOnlineStore(REDIS_URL, key_prefix="a:b")


def test_a_write_of_many_rows_takes_few_round_trips(store, monkeypatch):
    store.create_table(DRIVER)
    executed = []
    original = redis.client.Pipeline.execute

    def counting(self, *args, **kwargs):
        executed.append(len(self.command_stack))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    assert store.write_batch(DRIVER, batch(DRIVER, [row(i, 10) for i in range(12_000)])) == 12_000
    store.read(DRIVER, keys_table(DRIVER, list(range(100))), ["trips"])

    assert executed == [5_000, 5_000, 2_000, 101]
