"""The DuckDB connection every offline query runs in: in memory, UTC, bounded memory, spilling to a
private temporary directory that is removed afterwards.

``FEATURE_ROLLOUT_DUCKDB_MEMORY_LIMIT`` (default ``2GB``) and ``FEATURE_ROLLOUT_DUCKDB_THREADS``
(default: DuckDB's, one per core) are read when a connection opens, never at import.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

DEFAULT_MEMORY_LIMIT = "2GB"


@contextmanager
def duckdb_connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection with ``TimeZone='UTC'``, a memory limit and a spill directory.

    Extensions are never installed or loaded from the network: only the built-in ones are used.
    """
    with tempfile.TemporaryDirectory(prefix="feature-rollout-duckdb-") as spill:
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": os.environ.get("FEATURE_ROLLOUT_DUCKDB_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT),
            "temp_directory": spill,
            "autoinstall_known_extensions": False,
            # Every query orders its output explicitly; not keeping scan order lets DuckDB use less memory.
            "preserve_insertion_order": False,
        }
        threads = os.environ.get("FEATURE_ROLLOUT_DUCKDB_THREADS")
        if threads:
            config["threads"] = int(threads)
        connection = duckdb.connect(":memory:", config=config)
        try:
            # ICU is built in but loads after the configuration is applied, so the zone is set here.
            connection.execute("SET TimeZone = 'UTC'")
            yield connection
        finally:
            connection.close()


def quote(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier (names are validated upstream; quote them anyway)."""
    return '"' + identifier.replace('"', '""') + '"'
