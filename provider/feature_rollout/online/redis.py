"""The Redis online store: one hash per entity key, written by a newer-wins Lua script in pipelines.

Layout (``prefix`` is the ``key_prefix`` option, ``fr`` by default):

- ``{prefix}:{table}`` holds the table's shape as JSON: it is what ``create_table`` creates and
  checks, and what ``table_exists`` looks for.
- ``{prefix}:{table}:{key}`` is the hash of one entity; ``{key}`` is the JSON list of its join key
  values (Bytes in base64, Bool as 0/1, UnixTimestamp as integer microseconds). Fields are the
  non-null features and ``_event_ts``/``_created_ts``; a null feature is an absent field.

Values are stored as text (numbers in decimal, arrays as JSON) and decoded back to the declared
types on read. Counting and dropping a table SCAN its keys: fine for an online cache, but they
cost time in proportion to the whole database.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import redis
from redis.exceptions import NoScriptError

from feature_rollout.arrow_types import CREATED_TS, EVENT_TS, TIMESTAMP
from feature_rollout.core.errors import OnlineStoreError, OnlineTableMissing
from feature_rollout.core.refs import validate_name
from feature_rollout.core.types import Array, parse_type
from feature_rollout.online.base import (
    Column,
    OnlineTable,
    array_from_json,
    array_from_plain,
    check_shape,
    conform_batch,
    conform_keys,
    plain_values,
    read_schema,
    requested_features,
    shape_columns_from_json,
    shape_json,
    sort_by_keys,
    unavailable,
)
from feature_rollout.redaction import masked_url

DEFAULT_KEY_PREFIX = "fr"
DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0
ROWS_PER_ROUND_TRIP = 5_000
_CHECK = ("Check that the Redis server is running and the online store URL (host, port, database, password in "
          "online_store.url of feature_store.yaml, or the Airflow connection).")
_GLOB_SPECIAL = re.compile(r"[*?\[\]\\]")  # SCAN MATCH patterns are globs: a prefix is matched literally
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":")).encode

# Newer-wins write of one entity: KEYS[1] is its hash; ARGV[1], ARGV[2] its event and created time
# (int64 microseconds in decimal); ARGV[3..] field/value pairs of its non-null features. Returns 1
# when it wrote. Times are compared as decimal strings because Lua numbers are doubles, exact only
# up to 2^53. DEL before HSET so that a feature that became null loses its old value.
NEWER_WINS_SCRIPT = """
local function cmp(a, b)
  local a_neg, b_neg = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if a_neg ~= b_neg then return a_neg and -1 or 1 end
  local r = 0
  if #a ~= #b then r = (#a < #b) and -1 or 1 elseif a ~= b then r = (a < b) and -1 or 1 end
  if a_neg then return -r end
  return r
end
local stored = redis.call('HMGET', KEYS[1], '_event_ts', '_created_ts')
if stored[1] then
  local c = cmp(ARGV[1], stored[1])
  if c < 0 or (c == 0 and stored[2] and cmp(ARGV[2], stored[2]) <= 0) then return 0 end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '_event_ts', ARGV[1], '_created_ts', ARGV[2], unpack(ARGV, 3))
return 1
"""


class RedisOnlineStore:
    """The Redis online store.

    The client is made at the first operation (redis-py connects lazily too), so constructing a
    store does no I/O. Every bulk operation is pipelined: writes send ``ROWS_PER_ROUND_TRIP``
    script calls per round trip, a read is one round trip whatever the number of keys.

    :param url: ``redis://``, ``rediss://`` or ``unix://`` URL (password and database number included).
    :param key_prefix: the first part of every key, so that several registries can share one database.
    :param connect_timeout: seconds to wait for the server when connecting.
    """

    kind = "redis"

    def __init__(self, url: str, *, key_prefix: str = DEFAULT_KEY_PREFIX,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS) -> None:
        if not key_prefix or ":" in key_prefix:
            raise OnlineStoreError(f"The Redis key_prefix {key_prefix!r} must be non-empty and contain no ':'.")
        self.url = url
        self.key_prefix = key_prefix
        self._connect_timeout = connect_timeout
        self._redis: redis.Redis | None = None
        self._script_sha: str | None = None

    # --- connection ---------------------------------------------------------------------------

    @contextmanager
    def _client(self) -> Iterator[redis.Redis]:
        """The client, with connection failures turned into :class:`OnlineStoreUnavailableError`."""
        if self._redis is None:
            try:
                self._redis = redis.Redis.from_url(self.url, socket_connect_timeout=self._connect_timeout)
            except ValueError as err:  # redis-py's verdict on a malformed URL: as unusable as a closed port
                raise unavailable("Redis", self.url, err, _CHECK) from None
        try:
            yield self._redis
        except (redis.ConnectionError, redis.TimeoutError) as err:
            raise unavailable("Redis", self.url, err, _CHECK) from None

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None

    def _marker(self, name: str) -> str:
        return f"{self.key_prefix}:{name}"

    def _require_table(self, client: redis.Redis, name: str) -> None:
        if not client.exists(self._marker(name)):
            raise _missing(name, self.url)

    # --- tables -------------------------------------------------------------------------------

    def create_table(self, table: OnlineTable) -> None:
        marker = self._marker(table.name)
        with self._client() as client:
            existing = client.get(marker)
            if existing is None:
                if client.set(marker, shape_json(table), nx=True):
                    return
                existing = client.get(marker)  # another process created it in between
            if existing is not None:
                check_shape(table, shape_columns_from_json(existing), f"Redis (key {marker})")

    def drop_table(self, name: str) -> None:
        validate_name(name, "online table")
        with self._client() as client:
            batch: list[bytes] = []
            for key in client.scan_iter(match=self._rows_pattern(name), count=ROWS_PER_ROUND_TRIP):
                batch.append(key)
                if len(batch) >= ROWS_PER_ROUND_TRIP:
                    client.unlink(*batch)
                    batch = []
            if batch:
                client.unlink(*batch)
            # The marker goes last: a drop that dies half-way leaves a table that still exists, and
            # dropping it again finishes the job, instead of orphan rows a new table would inherit.
            client.delete(self._marker(name))

    def table_exists(self, name: str) -> bool:
        validate_name(name, "online table")
        with self._client() as client:
            return bool(client.exists(self._marker(name)))

    def _rows_pattern(self, name: str) -> str:
        prefix = _GLOB_SPECIAL.sub(lambda match: "\\" + match.group(0), self.key_prefix)
        return f"{prefix}:{name}:*"

    # --- rows ---------------------------------------------------------------------------------

    def write_batch(self, table: OnlineTable, batch: pa.Table | pa.RecordBatch) -> int:
        data = conform_batch(table, batch)
        if data.num_rows == 0:
            return 0
        keys = self._row_keys(table, data)
        events = data.column(EVENT_TS).to_pylist()
        created = data.column(CREATED_TS).to_pylist()
        names = table.feature_names
        features = [plain_values(data.column(c.name), c.dtype) for c in table.features]
        written = 0
        with self._client() as client:
            self._require_table(client, table.name)
            for start in range(0, len(keys), ROWS_PER_ROUND_TRIP):
                stop = start + ROWS_PER_ROUND_TRIP
                rows = zip(keys[start:stop], events[start:stop], created[start:stop],
                           *(values[start:stop] for values in features), strict=True)
                calls = []
                for key, event, created_at, *values in rows:
                    args: list[Any] = [key, event, created_at]
                    for name, value in zip(names, values, strict=True):
                        if value is not None:
                            args += (name, value)
                    calls.append(args)
                written += self._run_script(client, calls)
        return written

    def _run_script(self, client: redis.Redis, calls: list[list[Any]]) -> int:
        """Run the newer-wins script once per call, in one pipeline; the number of rows written."""
        for attempt in (1, 2):
            if self._script_sha is None:
                self._script_sha = str(client.script_load(NEWER_WINS_SCRIPT))
            pipe = client.pipeline(transaction=False)
            for args in calls:
                pipe.evalsha(self._script_sha, 1, *args)
            try:
                return sum(int(r) for r in pipe.execute())
            except NoScriptError:
                # The server lost its scripts (restart, SCRIPT FLUSH): load again and rerun the batch, which
                # newer-wins makes safe (a row written the first time is an equal row the second time).
                self._script_sha = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def read(self, table: OnlineTable, keys: pa.Table, features: Sequence[str]) -> pa.Table:
        wanted = requested_features(table, features)
        key_data = conform_keys(table, keys)
        fields = [*(c.name for c in wanted), EVENT_TS]
        row_keys = self._row_keys(table, key_data)
        if row_keys:
            with self._client() as client:
                pipe = client.pipeline(transaction=False)
                pipe.exists(self._marker(table.name))
                for key in row_keys:
                    pipe.hmget(key, fields)
                exists, *rows = pipe.execute()
            if not exists:
                raise _missing(table.name, self.url)
            columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
        else:
            columns = [()] * len(fields)
        arrays = [decode(values, c.dtype) for values, c in zip(columns, [*wanted, Column(EVENT_TS, "Int64")],
                                                                   strict=True)]
        return pa.Table.from_arrays(arrays, schema=read_schema(wanted))

    def count(self, table: OnlineTable) -> int:
        with self._client() as client:
            self._require_table(client, table.name)
            return sum(1 for _ in client.scan_iter(match=self._rows_pattern(table.name), count=ROWS_PER_ROUND_TRIP))

    def count_present(self, table: OnlineTable, keys: pa.Table) -> int:
        distinct = sorted(set(self._row_keys(table, conform_keys(table, keys))))
        with self._client() as client:
            pipe = client.pipeline(transaction=False)
            pipe.exists(self._marker(table.name))
            for start in range(0, len(distinct), ROWS_PER_ROUND_TRIP):
                pipe.exists(*distinct[start:start + ROWS_PER_ROUND_TRIP])
            exists, *counts = pipe.execute()
        if not exists:
            raise _missing(table.name, self.url)
        return sum(int(c) for c in counts)

    def dump(self, table: OnlineTable) -> pa.Table:
        fields = [*table.feature_names, EVENT_TS, CREATED_TS]
        rows: list[Sequence[Any]] = []
        with self._client() as client:
            self._require_table(client, table.name)
            keys = list(client.scan_iter(match=self._rows_pattern(table.name), count=ROWS_PER_ROUND_TRIP))
            for start in range(0, len(keys), ROWS_PER_ROUND_TRIP):
                pipe = client.pipeline(transaction=False)
                for key in keys[start:start + ROWS_PER_ROUND_TRIP]:
                    pipe.hmget(key, fields)
                rows += pipe.execute()
        # A key deleted between SCAN and HMGET reads as all nulls: leave it out.
        present = [i for i, row in enumerate(rows) if row[-2] is not None]
        prefix_length = len(self._marker(table.name)) + 1
        key_columns = _decode_keys(table, [keys[i][prefix_length:] for i in present])
        values: list[Sequence[Any]] = list(zip(*(rows[i] for i in present), strict=True)) if present \
            else [()] * len(fields)
        columns = [*table.features, Column(EVENT_TS, "Int64"), Column(CREATED_TS, "Int64")]
        arrays = key_columns + [decode(v, c.dtype) for v, c in zip(values, columns, strict=True)]
        return sort_by_keys(table, pa.Table.from_arrays(arrays, schema=table.arrow_schema()))

    def _row_keys(self, table: OnlineTable, data: pa.Table) -> list[str]:
        """``{prefix}:{table}:{JSON list of the join key values}`` for every row of ``data``."""
        base = self._marker(table.name) + ":"
        columns = []
        for column in table.join_keys:
            values = plain_values(data.column(column.name), column.dtype)
            if column.dtype == "Bytes":
                values = [None if v is None else base64.b64encode(v).decode("ascii") for v in values]
            columns.append(values)
        return [base + _COMPACT_JSON(list(row)) for row in zip(*columns, strict=True)]


def _decode_keys(table: OnlineTable, suffixes: Sequence[bytes]) -> list[pa.Array]:
    """The join key columns back from the JSON part of row keys."""
    parsed: list[Sequence[Any]] = list(zip(*(json.loads(s) for s in suffixes), strict=True)) if suffixes \
        else [()] * len(table.join_keys)
    arrays = []
    for values, column in zip(parsed, table.join_keys, strict=True):
        if column.dtype == "Bytes":
            values = [None if v is None else base64.b64decode(v) for v in values]
        arrays.append(array_from_plain(values, column.dtype))
    return arrays


def decode(values: Sequence[bytes | None], dtype: str) -> pa.Array:
    """Stored text back as an Arrow array of ``dtype``: numbers are parsed by Arrow's casts (vectorized)."""
    parsed = parse_type(dtype)
    if isinstance(parsed, Array):
        return array_from_json(values, parsed)
    raw = pa.array(values, pa.binary())
    if parsed.name == "Bytes":
        return raw
    text = raw.cast(pa.string())
    if parsed.name == "String":
        return text
    if parsed.name == "Bool":
        return text.cast(pa.int8()).cast(pa.bool_())
    if parsed.name in ("Float32", "Float64"):
        return text.cast(pa.float64()).cast(pa.float32() if parsed.name == "Float32" else pa.float64())
    integers = text.cast(pa.int64())
    if parsed.name == "Int32":
        return integers.cast(pa.int32())
    if parsed.name == "UnixTimestamp":
        return integers.cast(TIMESTAMP)
    return integers


def _missing(name: str, url: str) -> OnlineTableMissing:
    return OnlineTableMissing(name, f"the Redis online store at {masked_url(url)}")
