"""Two processes applying at once against one registry (SQLite file and PostgreSQL).

Conflicting stored plans: exactly one applies, the other gets StalePlanError, and versions, active
pointers and audit rows are consistent afterwards. Plain applies (plan + apply in one transaction)
serialize: both succeed, one on top of the other, with no duplicate version.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

WORKER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from tests.conftest import Defs
    from feature_rollout.store import FeatureStore
    from feature_rollout.core.errors import FeatureRolloutError

    root, repo, url, go, mode, arg = sys.argv[1:7]
    store = FeatureStore(repo, config={"project": "demo", "registry": url})
    if mode != "migrate":
        store.registry.load_state("demo")  # connect and migrate before the start line
    print("ready", flush=True)
    while not Path(go).exists():
        time.sleep(0.005)
    try:
        if mode == "migrate":
            store.registry.load_state("demo")
            print(json.dumps({"ok": True, "revision": 0}))
            sys.exit(0)
        if mode == "plan_id":
            result = store.apply(plan_id=arg)
        else:
            result = store.apply([Defs().view(tuple(arg.split(",")))])
        print(json.dumps({"ok": True, "revision": result.revision}))
    except FeatureRolloutError as err:
        print(json.dumps({"ok": False, "error": type(err).__name__, "message": str(err)}))
""")

ROOT = Path(__file__).resolve().parents[2]


def race(tmp_path: Path, url: str, jobs: list[tuple[str, str]]) -> list[dict]:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(ROOT), str(tmp_path), url, str(go), mode, arg],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for mode, arg in jobs
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    time.sleep(0.05)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    go.unlink()
    return results


def consistency(url: str) -> dict:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        versions = conn.execute(sa.text(
            "SELECT version_number, state FROM feature_view_versions ORDER BY version_number")).all()
        active = conn.execute(sa.text("SELECT active_version FROM feature_views")).scalar_one()
        revision = conn.execute(sa.text("SELECT revision FROM workspaces")).scalar_one()
        audit = conn.execute(sa.text(
            "SELECT from_version, to_version FROM promotions WHERE kind = 'promote' ORDER BY id")).all()
        applied = conn.execute(sa.text("SELECT count(*) FROM plans WHERE applied_at IS NOT NULL")).scalar_one()
    engine.dispose()
    # Exactly one active version, and it is the one the pointer names; the audit chain ends there.
    assert [n for n, state in versions if state == "active"] == [active]
    assert audit[-1][1] == active
    assert all(later[0] == earlier[1] for earlier, later in itertools.pairwise(audit))
    return {"versions": [n for n, _ in versions], "active": active, "revision": revision, "applied": applied}


def test_conflicting_stored_plans_exactly_one_applies(store, defs, registry_url, tmp_path):
    store.apply([defs.view()])
    plan_a = store.plan([defs.view(("conv_rate", "trips_today", "acc_rate"))])
    plan_b = store.plan([defs.view(("conv_rate", "city"))])
    assert plan_a.base_revision == plan_b.base_revision == 1
    results = race(tmp_path, registry_url, [("plan_id", plan_a.id), ("plan_id", plan_b.id)])
    assert sorted(r["ok"] for r in results) == [False, True]
    [loser] = [r for r in results if not r["ok"]]
    assert loser["error"] == "StalePlanError" and "now at revision 2" in loser["message"]
    state = consistency(registry_url)
    assert state == {"versions": [0, 1], "active": 1, "revision": 2, "applied": 2}
    winner_plan = plan_a if store.registry.get_plan(plan_a.id).applied_at else plan_b
    assert store.get_feature_view("driver_stats").feature_names == [
        f.name for f in (defs.view(("conv_rate", "trips_today", "acc_rate")) if winner_plan is plan_a
                         else defs.view(("conv_rate", "city"))).features]


def test_plain_applies_serialize_without_duplicates(store, defs, registry_url, tmp_path):
    store.apply([defs.view()])
    results = race(tmp_path, registry_url, [("objects", "conv_rate,trips_today,acc_rate"), ("objects", "conv_rate")])
    assert [r["ok"] for r in results] == [True, True]
    assert sorted(r["revision"] for r in results) == [2, 3]
    state = consistency(registry_url)
    assert state["versions"] == [0, 1, 2] and state["revision"] == 3


def test_the_same_new_version_raced_twice_is_created_once(store, defs, registry_url, tmp_path):
    store.apply([defs.view()])
    results = race(tmp_path, registry_url, [("objects", "conv_rate,acc_rate"), ("objects", "conv_rate,acc_rate")])
    assert [r["ok"] for r in results] == [True, True]
    state = consistency(registry_url)
    # The second apply plans on top of the first and finds nothing to do: no duplicate v2.
    assert state["versions"] == [0, 1] and state["revision"] == 2


def test_opening_a_sqlite_registry_while_another_process_writes_waits_for_wal(tmp_path):
    """Switching to WAL needs an exclusive lock, and SQLite refuses it at once (no busy wait) while another
    connection writes: the engine waits and looks again instead of failing with 'database is locked'."""
    import sqlite3
    import threading

    from feature_rollout.registry.engine import dispose_engines, get_engine

    path = tmp_path / "registry.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # what SQLite does on its own
        sqlite3.connect(path, timeout=30).execute("PRAGMA journal_mode=WAL")
    release = threading.Timer(0.5, lambda: writer.execute("COMMIT"))
    release.start()
    try:
        with get_engine(f"sqlite:///{path}").connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 1
    finally:
        release.join()
        writer.close()
        dispose_engines()
