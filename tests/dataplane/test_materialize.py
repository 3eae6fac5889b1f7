"""DESIGN §9: per-version materialization with a ledger; idempotent on every online store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from feature_rollout.core.errors import (
    InvalidDefinitionError,
    NaiveTimestampError,
    OnlineStoreUnavailableError,
    SchemaMismatchError,
    SourceNotFoundError,
)
from feature_rollout.store import FeatureStore
from tests.conftest import DEMO_END, add_feature, dump_registry

START = DEMO_END - timedelta(days=3)
MIDDLE = DEMO_END - timedelta(days=1, hours=5)
STORES = ["sqlite", "postgres", "redis"]


def online_dump(store: FeatureStore, version: int = 0) -> list[dict]:
    _, record = store.registry.get_version(store.workspace, "driver_stats", version)
    return store.online_store.dump(store.online_table(record)).to_pylist()


def clean_table(tmp_path: Path, demo_repo: Path, window: tuple) -> list[dict]:
    """The table a single clean run over ``window`` gives, in a separate SQLite store."""
    clean = FeatureStore(demo_repo, config={"project": "demo", "registry": f"sqlite:///{tmp_path}/clean.db",
                                            "online_store": {"type": "sqlite", "path": str(tmp_path / "clean.db2")}})
    clean.apply()
    clean.materialize(*window)
    return online_dump(clean)


@pytest.mark.parametrize("online_config", STORES, indirect=True)
def test_materialize_writes_the_latest_row_per_entity(demo_store):
    [result] = demo_store.materialize(START, DEMO_END)
    assert (result.view, result.version, result.status) == ("driver_stats", 0, "succeeded")
    assert (result.rows_read, result.rows_written) == (20 * 72, 20)
    rows = online_dump(demo_store)
    assert [r["driver_id"] for r in rows] == list(range(1001, 1021))
    # The latest hour of the interval, for every driver.
    last_hour = int((DEMO_END - timedelta(hours=1)).timestamp() * 1_000_000)
    assert {r["_event_ts"] for r in rows} == {last_hour}
    [run] = demo_store.ledger.runs("demo", "driver_stats", 0)
    assert (run["status"], run["rows_read"], run["rows_written"], run["error"]) == ("succeeded", 1440, 20, None)


@pytest.mark.parametrize("online_config", STORES, indirect=True)
def test_twice_overlapping_and_out_of_order_equal_one_clean_run(demo_store, demo_repo, tmp_path):
    expected = clean_table(tmp_path, demo_repo, (START, DEMO_END))
    demo_store.materialize(MIDDLE, DEMO_END)                   # the newer half first
    demo_store.materialize(START, MIDDLE + timedelta(hours=3))  # then an older, overlapping interval
    demo_store.materialize(START, DEMO_END)                    # then everything again
    again = demo_store.materialize(START, DEMO_END)
    assert again[0].rows_written == 0  # nothing newer: nothing rewritten
    assert online_dump(demo_store) == expected


def test_each_version_has_its_own_table_and_ledger(demo_store, demo_repo):
    add_feature(demo_repo)
    demo_store.apply(no_promote=True)
    demo_store.materialize(START, MIDDLE)
    assert [r["version_number"] for r in demo_store.ledger.runs("demo", "driver_stats")] == [0]
    assert online_dump(demo_store, 1) == []  # staged v1's table exists from apply, empty
    [result] = demo_store.materialize(START, DEMO_END, ["driver_stats"], version="v1")
    assert result.version == 1 and result.rows_written == 20
    assert sorted(online_dump(demo_store, 1)[0]) == ["_created_ts", "_event_ts", "acc_rate", "avg_daily_trips",
                                                     "conv_rate", "driver_id", "trips_today"]
    assert demo_store.ledger.coverage("demo", "driver_stats", 0)[0].end == MIDDLE  # v0 did not inherit v1's run


def test_include_staged_and_incremental_watermarks(demo_store, demo_repo):
    add_feature(demo_repo)
    demo_store.apply(no_promote=True)
    demo_store.materialize(START, MIDDLE, ["driver_stats"], version="v0")
    results = demo_store.materialize_incremental(DEMO_END, include_staged=True)
    # v0 resumes at its watermark; v1, never materialized, starts one ttl (1 day) before the end.
    assert [(r.version, r.start, r.end) for r in results] == [
        (0, MIDDLE, DEMO_END), (1, DEMO_END - timedelta(days=1), DEMO_END)]
    assert demo_store.materialize_incremental(DEMO_END) == []  # already there


def test_staged_table_is_created_at_apply(demo_store, demo_repo):
    add_feature(demo_repo)
    result = demo_store.apply(no_promote=True)
    [(_, _, table)] = result.created_versions
    assert demo_store.online_store.table_exists(table)


@pytest.mark.parametrize(("change", "error", "message"), [
    ("missing", SourceNotFoundError, "driver_stats.parquet"),
    ("column", SchemaMismatchError, "avg_daily_trips_missing"),
    ("naive", NaiveTimestampError, "has no time zone"),
    ("backwards", InvalidDefinitionError, "must be before its end"),
])
def test_bad_input_touches_neither_ledger_nor_store(demo_store, demo_repo, change, error, message):
    registry_url = demo_store.config.registry_url
    start, end = START, DEMO_END
    if change == "missing":
        (demo_repo / "data" / "driver_stats.parquet").rename(demo_repo / "data" / "moved.parquet")
    elif change == "column":
        add_feature(demo_repo, 'Field(name="avg_daily_trips_missing", dtype=Int64)')
        demo_store.apply(no_promote=True)
    elif change == "naive":
        start = start.replace(tzinfo=None)
    else:
        start, end = end, start
    before = (dump_registry(registry_url), online_dump(demo_store))
    with pytest.raises(error, match=message):
        if change == "column":
            demo_store.materialize(START, DEMO_END, ["driver_stats"], version="v1")
        else:
            demo_store.materialize(start, end)
    assert (dump_registry(registry_url), online_dump(demo_store)) == before


def test_an_unreachable_online_store_changes_nothing(demo_repo, tmp_path):
    store = FeatureStore(demo_repo, config={"project": "demo", "registry": f"sqlite:///{tmp_path}/r.db",
                                            "online_store": {"type": "redis", "url": "redis://:pw1@127.0.0.1:1/0"}})
    with pytest.raises(OnlineStoreUnavailableError) as info:
        store.apply()
    assert "pw1" not in str(info.value)
    assert dump_registry(f"sqlite:///{tmp_path}/r.db").get("feature_view_versions", []) == []


KILL_WORKER = """
import sys, time
from datetime import datetime
sys.path.insert(0, sys.argv[1])
from feature_rollout.store import FeatureStore
repo, registry, online, start, end = sys.argv[2:7]
store = FeatureStore(repo, config={"project": "demo", "registry": registry,
                                   "online_store": {"type": "sqlite", "path": online}})
def progress(p):
    print(f"chunk {p.chunks}", flush=True)
    time.sleep(0.2)  # slow enough to be killed in the middle
store.materialize(datetime.fromisoformat(start), datetime.fromisoformat(end), progress=progress, batch_rows=7)
print("done", flush=True)
"""


def test_a_killed_run_covers_nothing_and_its_retry_equals_a_clean_run(demo_store, demo_repo, tmp_path):
    root = Path(__file__).resolve().parents[2]
    registry = demo_store.config.registry_url
    online = demo_store.config.online_store.url
    proc = subprocess.Popen([sys.executable, "-c", KILL_WORKER, str(root), str(demo_repo), registry, online,
                             START.isoformat(), DEMO_END.isoformat()], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "chunk 2":
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    [killed] = demo_store.ledger.runs("demo", "driver_stats", 0)
    assert killed["status"] == "running" and killed["finished_at"] is None
    assert demo_store.ledger.coverage("demo", "driver_stats", 0) == []
    partial = online_dump(demo_store)
    assert 0 < len(partial) < 20  # some chunks landed, not all
    assert not demo_store.readiness("driver_stats", 0, START, DEMO_END).ready

    demo_store.materialize(START, DEMO_END)
    assert online_dump(demo_store) == clean_table(tmp_path, demo_repo, (START, DEMO_END))
    retry, killed = demo_store.ledger.runs("demo", "driver_stats", 0)
    assert (retry["status"], killed["status"]) == ("succeeded", "superseded")
    assert demo_store.readiness("driver_stats", 0, START, DEMO_END).ready


def test_a_failing_run_is_recorded_as_failed(demo_store, monkeypatch):
    from feature_rollout import materialize

    def broken(*args, **kwargs):
        raise OSError("disk on fire")
        yield  # a generator, like latest_rows

    monkeypatch.setattr(materialize, "latest_rows", broken)
    with pytest.raises(OSError, match="disk on fire"):
        demo_store.materialize(START, DEMO_END)
    [run] = demo_store.ledger.runs("demo", "driver_stats", 0)
    assert (run["status"], run["error"]) == ("failed", "OSError: disk on fire")
    assert demo_store.ledger.coverage("demo", "driver_stats", 0) == []


def test_cli_materialize_and_status(demo_store, demo_repo, capsys):
    from feature_rollout.cli import main

    args = ["--repo", str(demo_repo)]
    os.environ.pop("FEATURE_ROLLOUT_DEBUG", None)
    (demo_repo / "feature_store.yaml").write_text(
        "project: demo\nregistry: data/registry.db\nonline_store:\n  type: sqlite\n  path: " +
        str(demo_store.config.online_store.url) + "\n")
    assert main([*args, "materialize", START.isoformat(), "2026-01-07", "--views", "driver_stats"]) == 0
    out, err = capsys.readouterr()
    assert "Materialized driver_stats v0 [2026-01-05T00:00:00+00:00, 2026-01-07T00:00:00+00:00): 960 rows read" in out
    assert "chunk 1" in err
    assert main([*args, "materialize-incremental", "2026-01-08", "--json", "--quiet"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert (result["start"], result["end"]) == ("2026-01-07T00:00:00+00:00", "2026-01-08T00:00:00+00:00")
    assert main([*args, "status", "driver_stats"]) == 0
    out = capsys.readouterr().out
    assert "v0 active: 20 rows online in demo_driver_stats; covered: [2026-01-05T00:00:00+00:00, " \
           "2026-01-08T00:00:00+00:00)" in out
    assert main([*args, "materialize", "2026-01-05T00:00:00", "2026-01-06"]) == 2
    assert "has no time zone" in capsys.readouterr().err


def test_an_unreachable_store_at_materialization_records_no_run(demo_store, demo_repo):
    registry_url = demo_store.config.registry_url
    before = dump_registry(registry_url)
    down = FeatureStore(demo_repo, config={"project": "demo", "registry": registry_url,
                                           "online_store": {"type": "postgres",
                                                            "url": "postgresql://postgres:pw2@127.0.0.1:1/test"}})
    with pytest.raises(OnlineStoreUnavailableError, match=r"postgres:\*\*\*@127.0.0.1:1") as info:
        down.materialize(START, DEMO_END)
    assert "pw2" not in str(info.value)
    assert dump_registry(registry_url) == before


def test_status_reports_a_missing_online_table_instead_of_failing(demo_store, demo_repo, capsys):
    """E.g. Redis restarted without persistence: status says the table is missing, materializing restores it."""
    from feature_rollout.cli import main

    demo_store.materialize(START, DEMO_END)
    _, v0 = demo_store.registry.get_version("demo", "driver_stats", 0)
    demo_store.online_store.drop_table(v0.online_table)
    [version] = demo_store.status("driver_stats")["versions"]
    assert (version["table_missing"], version["online_rows"], version["table_dropped"]) == (True, None, False)
    (demo_repo / "feature_store.yaml").write_text(
        "project: demo\nregistry: data/registry.db\nonline_store:\n  type: sqlite\n  path: " +
        str(demo_store.config.online_store.url) + "\n")
    assert main(["--repo", str(demo_repo), "status", "driver_stats"]) == 0
    assert "online table missing (materialize to recreate it)" in capsys.readouterr().out
    demo_store.materialize(START, DEMO_END)
    [version] = demo_store.status("driver_stats")["versions"]
    assert (version["table_missing"], version["online_rows"]) == (False, 20)
