"""Fault injection under a real Airflow (see docs/reliability.md for what each case found).

One deployment (:mod:`tests.system.deployment`) serves every case; each case rolls out a feature view of
its own (appended to the repo's ``features.py``), so that no case sees another's versions, ledger rows or
online keys. Faults: SIGKILL of a materializing task process and of an apply's task process right after its
commit, a SIGKILLed triggerer while a gate sensor is deferred, two rollouts of one view at once, a Redis
restart in the middle of a materialization and before a rollout, and a PostgreSQL outage at the end of a
materialization and during an apply. Two cases found provider bugs, since fixed (docs/reliability.md).

Every case ends by checking that nothing was lost and nothing half-done is visible: the online rows equal
those of a clean run (the same view materialized into a fresh registry and key prefix), the ledger
(``materialization_runs``) never reports a killed run as covering anything, and the versions and the active
pointer in the registry are what one clean rollout leaves.

The PostgreSQL and Redis cases restart the machine's shared servers (the test suite runs serially); they
are always running again when a case ends, whatever happened. Only loopback servers are used.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa

from tests.conftest import PG_URL, REDIS_URL, require_postgres, require_redis, skip_or_fail
from tests.system.deployment import END, START, Deployment, airflow_deployment

pytestmark = pytest.mark.slow

WINDOW = (datetime.fromisoformat(START), datetime.fromisoformat(END))
ENTITIES = 20  # drivers of the demo repo, all with rows in the window: one online row each
PACE_SECONDS = 1.0  # pause after each 2-row chunk of a paced materialization: 10 chunks, ~10 s

FAULT_MATERIALIZE_DAG = '''
"""Fault injection: a paced materialization, so that a fault lands in the middle of a run.

The real ``FeatureStore.materialize`` (ledger and Redis online store) in 2-row chunks with a pause after
each chunk on the first try (the retry runs at full speed). Retried once.
"""
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

with DAG(dag_id="fault_materialize", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         params={"view": Param("", type="string"), "version": Param("v0", type="string"),
                 "start": Param("START", type="string"), "end": Param("END", type="string"),
                 "pace": Param(0.0, type="number")},
         default_args={"retries": 1, "retry_delay": timedelta(seconds=2)}) as dag:

    @task
    def materialize(params=None, ti=None):
        import os
        import time
        from datetime import datetime as dt
        from pathlib import Path

        from feature_rollout.hooks.feature_registry import FeatureRegistryHook

        Path("PIDS", f"{ti.run_id}.{ti.try_number}").write_text(str(os.getpid()))
        pace = float(params["pace"]) if ti.try_number == 1 else 0.0

        def progress(p):
            print(f"chunk {p.chunks}: {p.rows_upserted} rows upserted", flush=True)
            time.sleep(pace)

        store = FeatureRegistryHook().get_conn()
        [result] = store.materialize(dt.fromisoformat(params["start"]), dt.fromisoformat(params["end"]),
                                     [params["view"]], version=params["version"], batch_rows=2, progress=progress,
                                     run_id=f"{ti.dag_id}/{ti.run_id}/{ti.task_id}")
        return result.to_dict()

    materialize()
'''

FAULT_GATE_DAG = '''
"""Fault injection: a deferrable populated-gate sensor whose data arrives only when the test provides it."""
from datetime import datetime

from airflow.sdk import DAG, Param

from feature_rollout.sensors.feature_rollout import VersionPopulatedSensor

with DAG(dag_id="fault_gate", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         params={"view": Param("", type="string"), "version": Param("v0", type="string")}) as dag:
    VersionPopulatedSensor(task_id="wait", view="{{ params.view }}", version="{{ params.version }}",
                           start="START", end="END", deferrable=True, poke_interval=2, timeout=240, retries=0)
'''

VIEW = '''

{name} = FeatureView(
    name="{name}",
    entities=[driver],
    ttl=timedelta(days=1),
    source=driver_stats_source,
    schema=[Field(name="driver_id", dtype=Int64), Field(name="conv_rate", dtype=Float32),
            Field(name="trips_today", dtype=Int64)],
    online=True,
)
'''


def rollout_conf(view: str) -> dict[str, Any]:
    return {"views": [view], "start": START, "end": END, "chunk_hours": 24, "sample_size": 50}


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require_server_control()
    base = tmp_path_factory.mktemp("faults")
    pids = base / "pids"
    pids.mkdir()
    dags = {
        "fault_materialize.py": FAULT_MATERIALIZE_DAG.replace("PIDS", str(pids))
        .replace("START", START).replace("END", END),
        "fault_gate.py": FAULT_GATE_DAG.replace("START", START).replace("END", END),
    }
    settings = {
        # Every task of the rollout DAG gets one retry, 3 s later (operators that must not retry still
        # raise AirflowFailException).
        "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "1",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "3",
        # A new triggerer takes over the triggers of a dead one after this many seconds without heartbeat.
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
        # A running task whose worker vanished (a scheduler that died with its LocalExecutor) is failed
        # after this long instead of the default 300 s.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
    }
    # Only the manual rollout of the example DAGs: the hourly materialization of every live version would add
    # ledger runs to the cases' views whenever an hour begins.
    with airflow_deployment(base, example_dags=["feature_rollout_manual.py"], extra_dags=dags,
                            extra_env=settings) as deployment:
        deployment.store().apply()  # the workspace exists before any case locks its row
        try:
            yield deployment
        finally:
            if deployment.events:
                print("\nWhat happened to the deployment:\n  " + "\n  ".join(deployment.events))


# --- the servers ----------------------------------------------------------------------------------------


def _postgres_cluster() -> list[str] | None:
    """``[version, name]`` of the local cluster serving PG_URL's port, from ``pg_lsclusters``."""
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        return None
    port = str(urlparse(PG_URL.replace("+psycopg", "")).port or 5432)
    listing = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, timeout=30).stdout
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == port:
            return fields[:2]
    return None


def require_server_control() -> None:
    """PostgreSQL and Redis must answer and be restartable from here (loopback, local cluster)."""
    require_postgres()
    require_redis()
    missing = []
    if _postgres_cluster() is None:
        missing.append("no local PostgreSQL cluster (pg_ctlcluster/pg_lsclusters) on the port of PG_URL")
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        missing.append("no redis-server/redis-cli")
    if missing:
        skip_or_fail("Fault tests restart the servers: " + "; ".join(missing))


def _pg_ctl(action: str) -> None:
    version, name = _postgres_cluster() or ["", ""]
    result = subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, action],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"pg_ctlcluster {action}: {result.stdout}{result.stderr}"


def postgres_answers() -> bool:
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 2}, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def wait_until(answers: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not answers():
        assert time.monotonic() < deadline, f"{what} did not answer within {timeout}s"
        time.sleep(0.5)


def ensure_postgres(timeout: float = 90) -> None:
    """Start the cluster if it is down, and wait until it accepts connections."""
    if postgres_answers():
        return
    with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
        _pg_ctl("start")
    wait_until(postgres_answers, "PostgreSQL", timeout)


@contextlib.contextmanager
def postgres_stopped() -> Iterator[None]:
    """PostgreSQL is down inside the block (fast shutdown: every session is terminated), and up after it."""
    try:
        _pg_ctl("stop")
        assert not postgres_answers()
        yield
    finally:
        ensure_postgres()


def _redis_port() -> str:
    return str(urlparse(REDIS_URL).port or 6379)


def redis_answers() -> bool:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def ensure_redis(timeout: float = 30) -> None:
    """Start Redis (keeping nothing on disk) if it is down, and wait until it answers."""
    if redis_answers():
        return
    subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", _redis_port(),
                    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
                    "--logfile", "/var/log/redis/ci.log"], capture_output=True, timeout=30)
    wait_until(redis_answers, "Redis", timeout)


def restart_redis() -> None:
    """Shut Redis down without saving (it keeps nothing on disk: every key is lost) and start it again."""
    try:
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", _redis_port(), "shutdown", "nosave"],
                       capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        while redis_answers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not redis_answers(), "Redis did not shut down"
    finally:
        ensure_redis()


# --- registry and online facts ---------------------------------------------------------------------------


def add_view(deployment: Deployment, name: str) -> None:
    """A new feature view over the demo source (its first version is what the case rolls out)."""
    path = deployment.repo / "features.py"
    path.write_text(path.read_text() + VIEW.format(name=name))


def versions(deployment: Deployment, view: str) -> list[tuple[int, str]]:
    return [(int(n), str(s)) for n, s in deployment.query(
        "SELECT version_number, state FROM feature_view_versions WHERE workspace = 'demo' AND name = :v "
        "ORDER BY version_number", v=view)]


def active_version(deployment: Deployment, view: str) -> int | None:
    rows = deployment.query("SELECT active_version FROM feature_views WHERE workspace = 'demo' AND name = :v "
                            "AND deleted_at IS NULL", v=view)
    return rows[0][0] if rows else None


def promotions(deployment: Deployment, view: str) -> list[tuple[str, int | None, int | None]]:
    return [tuple(r) for r in deployment.query(
        "SELECT kind, from_version, to_version FROM promotions WHERE workspace = 'demo' AND name = :v ORDER BY id",
        v=view)]


def ledger(deployment: Deployment, view: str) -> list[dict[str, Any]]:
    """The view's materialization runs, oldest first."""
    return [dict(r._mapping) for r in deployment.query(
        'SELECT id, version_number, status, rows_read, rows_written, "start", "end", run_id, error '
        "FROM materialization_runs WHERE workspace = 'demo' AND name = :v ORDER BY id", v=view)]


def workspace_revision(deployment: Deployment) -> int:
    return int(deployment.query("SELECT revision FROM workspaces WHERE name = 'demo'")[0][0])


def online_rows(store: Any, view: str, version: int) -> list[dict[str, Any]]:
    _, target = store.registry.get_version(store.workspace, view, version)
    return list(store.online_store.dump(store.online_table(target)).to_pylist())


def clean_rows(deployment: Deployment, view: str) -> list[dict[str, Any]]:
    """The online rows of one clean materialization of ``view`` over the window: the same repo and data, a
    fresh SQLite registry and a Redis key prefix of its own."""
    from feature_rollout.registry.engine import dispose_engines
    from feature_rollout.store import FeatureStore
    from tests.conftest import delete_redis_prefix

    repo = deployment.base / f"clean_{view}_{uuid.uuid4().hex[:6]}"
    shutil.copytree(deployment.repo, repo)
    prefix = f"frclean{uuid.uuid4().hex[:8]}"
    (repo / "feature_store.yaml").write_text(
        f"project: demo\nregistry: {repo / 'data' / 'clean_registry.db'}\n"
        f"online_store:\n  type: redis\n  url: {REDIS_URL}\n  key_prefix: {prefix}\n")
    try:
        store = FeatureStore(repo)
        store.apply()
        [result] = store.materialize(*WINDOW, [view])
        assert result.status == "succeeded"
        return online_rows(store, view, 0)
    finally:
        delete_redis_prefix(prefix)
        dispose_engines()


_TABLES: dict[tuple[str, str], str] = {}


def redis_row_keys(deployment: Deployment, view: str) -> int:
    """How many row keys v0 of ``view`` has in Redis (-1 while Redis does not answer)."""
    import redis

    if (deployment.database, view) not in _TABLES:  # looked up once: PostgreSQL may be down later
        [(table,)] = deployment.query("SELECT online_table FROM feature_view_versions WHERE workspace = 'demo' "
                                      "AND name = :v AND version_number = 0", v=view)
        _TABLES[deployment.database, view] = table
    table = _TABLES[deployment.database, view]
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        return sum(1 for _ in client.scan_iter(match=f"{deployment.redis_prefix}:{table}:*", count=1000))
    except redis.RedisError:
        return -1
    finally:
        client.close()


def assert_clean_outcome(deployment: Deployment, view: str, *, promoted: bool) -> list[dict[str, Any]]:
    """Nothing lost, nothing half-done: one version, the pointer where one clean rollout leaves it, exactly
    one succeeded run covering the window (every other run failed or superseded, none still ``running``),
    and the online rows of a clean run. Returns the ledger."""
    assert versions(deployment, view) == [(0, "active" if promoted else "staged")]
    assert active_version(deployment, view) == (0 if promoted else None)
    assert promotions(deployment, view) == ([("promote", None, 0)] if promoted else [])
    runs = ledger(deployment, view)
    assert [r["status"] for r in runs if r["status"] == "succeeded"] == ["succeeded"], runs
    assert {r["status"] for r in runs} <= {"succeeded", "failed", "superseded"}, runs
    [done] = [r for r in runs if r["status"] == "succeeded"]
    # rows_written counts rows inserted or replaced: a retry does not rewrite rows an earlier try left.
    assert (done["start"], done["end"]) == WINDOW and 0 <= done["rows_written"] <= ENTITIES, done
    store = deployment.store()
    assert [(c.start, c.end) for c in store.ledger.coverage("demo", view, 0)] == [WINDOW]
    assert store.readiness(view, 0, *WINDOW).ready
    rows = online_rows(store, view, 0)
    assert len(rows) == ENTITIES and redis_row_keys(deployment, view) == ENTITIES
    assert rows == clean_rows(deployment, view)
    return runs


def wait_mid_materialization(deployment: Deployment, view: str, run_id: str, *, chunks: int = 3,
                             timeout: float = 120) -> int:
    """Wait until the first try of ``fault_materialize`` has committed ``chunks`` chunks (its ledger run is
    ``running`` and part of the rows are in Redis); returns the PID of its task process."""
    pid_file = deployment.base / "pids" / f"{run_id}.1"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment.check_alive()
        running = [r for r in ledger(deployment, view) if r["status"] == "running"]
        keys = redis_row_keys(deployment, view) if running else 0
        if pid_file.exists() and running and 2 * chunks <= keys < ENTITIES:
            return int(pid_file.read_text())
        assert keys < ENTITIES, "the paced materialization ran to its end before the fault could be injected"
        time.sleep(0.2)
    raise AssertionError(f"fault_materialize did not get going in {timeout}s: "
                         f"{deployment.task_states('fault_materialize', run_id)}")


def assert_half_done_is_invisible(deployment: Deployment, view: str) -> None:
    """In the middle of a run: some rows are online, the run is ``running``, and nothing reports it ready."""
    store = deployment.store()
    readiness = store.readiness(view, 0, *WINDOW)
    assert not readiness.ready and readiness.missing_intervals and readiness.found_entities < ENTITIES
    assert store.ledger.coverage("demo", view, 0) == []


def try_numbers(deployment: Deployment, dag_id: str, run_id: str) -> dict[str, int]:
    return {ti["task_id"] + ("" if ti["map_index"] < 0 else f"[{ti['map_index']}]"): int(ti["try_number"])
            for ti in deployment.task_instances(dag_id, run_id)}


@contextlib.contextmanager
def holding_lock(deployment: Deployment, sql: str) -> Iterator[None]:
    """Run ``sql`` (a lock) in a transaction of the test's own, held until the block ends."""
    engine = sa.create_engine(deployment.metadata_url, poolclass=sa.pool.NullPool)
    conn = engine.connect()
    try:
        conn.begin()
        conn.execute(sa.text("SET LOCAL lock_timeout = '20s'"))
        conn.execute(sa.text(sql))
        yield
    finally:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            conn.rollback()
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            conn.close()
        engine.dispose()


def workspace_locked(deployment: Deployment) -> contextlib.AbstractContextManager[None]:
    """Hold the lock every apply takes on the workspace row, so that applies queue up behind the test."""
    return holding_lock(deployment, "SELECT revision FROM workspaces WHERE name = 'demo' FOR UPDATE")


def lock_waiters(deployment: Deployment, table: str) -> list[Any]:
    """``(pid, client_port)`` of the deployment's sessions waiting for a lock in a query on ``table``."""
    return deployment.query("SELECT pid, client_port FROM pg_stat_activity WHERE datname = :d "
                            "AND wait_event_type = 'Lock' AND query ILIKE :q", d=deployment.database,
                            q=f"%FROM {table}%")


def wait_for_lock_waiters(deployment: Deployment, count: int, table: str = "workspaces",
                          timeout: float = 180) -> list[Any]:
    """Wait until ``count`` sessions wait for a lock in a query on ``table`` (e.g. the queued applies)."""
    deadline = time.monotonic() + timeout
    waiting: list[Any] = []
    while time.monotonic() < deadline:
        deployment.check_alive()
        waiting = lock_waiters(deployment, table)
        if len(waiting) >= count:
            return waiting
        time.sleep(0.5)
    raise AssertionError(f"{len(waiting)} of {count} sessions reached the lock on {table} in {timeout}s")


def process_of_session(client_port: int) -> int:
    """The PID of the local process whose PostgreSQL connection uses ``client_port``."""
    import psutil

    pg_port = urlparse(PG_URL.replace("+psycopg", "")).port or 5432
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == client_port and conn.raddr and conn.raddr.port == pg_port \
                and conn.pid:
            return int(conn.pid)
    raise AssertionError(f"no local process holds the PostgreSQL connection from port {client_port}")


def restore_online_tables(deployment: Deployment) -> None:
    """After Redis lost every key: recreate every live version's table and materialize what its ledger
    covers, as the scheduled materialization would (so that later cases start from a served state)."""
    store = deployment.store()
    for record in store.registry.load_state(store.workspace).live_views().values():
        for version in record.versions:
            if version.state.value not in ("active", "staged") or version.table_dropped:
                continue
            store.online_store.create_table(store.online_table(version))
            for covered in store.ledger.coverage(store.workspace, record.name, version.number):
                store.materialize(covered.start, covered.end, [record.name], version=version.number)


# --- the cases -------------------------------------------------------------------------------------------


def test_a_sigkilled_task_is_retried_and_its_run_never_counts(faults):
    view = "fault_kill"
    add_view(faults, view)
    faults.store().apply(no_promote=True)
    run_id = faults.trigger("fault_materialize", {"view": view, "version": "v0", "pace": PACE_SECONDS})
    pid = wait_mid_materialization(faults, view, run_id)
    assert_half_done_is_invisible(faults, view)

    os.kill(pid, signal.SIGKILL)  # the task process itself; its supervisor sees it die
    while _alive(pid):
        time.sleep(0.05)
    left = redis_row_keys(faults, view)  # what the killed try wrote before it died

    state = faults.wait_for_run("fault_materialize", run_id, timeout=180)
    assert state == "success", faults.failure_logs("fault_materialize", run_id)
    assert try_numbers(faults, "fault_materialize", run_id) == {"materialize": 2}
    runs = assert_clean_outcome(faults, view, promoted=False)
    killed, retried = runs
    assert killed["run_id"] == retried["run_id"] == f"fault_materialize/{run_id}/materialize"
    # The killed run could record nothing: it stays as it started, never covering anything, until the
    # retry's success supersedes it.
    assert (killed["status"], killed["rows_read"], killed["rows_written"]) == ("superseded", 0, 0)
    assert killed["error"] == f"superseded by run {retried['id']}"
    assert retried["rows_written"] == ENTITIES - left  # newer-wins: the rows the killed try left stay as they are


def test_an_apply_task_killed_after_its_commit_is_retried_to_success(faults):
    view = "fault_apply_kill"
    add_view(faults, view)
    with contextlib.ExitStack() as entities_held:
        with workspace_locked(faults):
            run_id = faults.trigger("feature_rollout_manual", rollout_conf(view))
            wait_for_lock_waiters(faults, 1)
            # The apply does not touch `entities`, but the operator reads it right after the commit (the staged
            # versions it returns): holding that table keeps the task between its commit and its success.
            entities_held.enter_context(holding_lock(faults, "LOCK TABLE entities IN ACCESS EXCLUSIVE MODE"))
        [(_, client_port)] = wait_for_lock_waiters(faults, 1, "entities")
        [(plan_id, applied_by)] = faults.query("SELECT id, run_id FROM plans WHERE workspace = 'demo' "
                                               "AND applied_at IS NOT NULL AND changes_json::text LIKE :v",
                                               v=f'%"{view}"%')
        assert applied_by == f"feature_rollout_manual/{run_id}/rollout.apply"  # committed
        pid = process_of_session(client_port)
        os.kill(pid, signal.SIGKILL)  # the apply's task process, after its commit, before its success

    state = faults.wait_for_run("feature_rollout_manual", run_id, timeout=240)
    assert state == "success", faults.failure_logs("feature_rollout_manual", run_id)
    assert try_numbers(faults, "feature_rollout_manual", run_id)["rollout.apply"] == 2
    log = faults.task_logs("feature_rollout_manual", "rollout.apply", run_id)
    assert f"Plan {plan_id} was already applied by an earlier try of this task" in log, log[-3000:]
    assert versions(faults, view) == [(0, "active")]  # applied once, then rolled out
    assert_clean_outcome(faults, view, promoted=True)


def test_a_triggerer_killed_while_a_sensor_is_deferred_is_replaced_and_the_sensor_resumes(faults):
    view = "fault_trigger"
    add_view(faults, view)
    faults.store().apply(no_promote=True)  # staged, nothing materialized: the sensor must defer
    run_id = faults.trigger("fault_gate", {"view": view, "version": "v0"})
    faults.wait_for_task("fault_gate", run_id, "wait", ("deferred",))
    deadline = time.monotonic() + 60
    while not faults.query("SELECT t.triggerer_id FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
                           "WHERE ti.dag_id = 'fault_gate' AND ti.run_id = :r AND t.triggerer_id IS NOT NULL",
                           r=run_id):
        assert time.monotonic() < deadline, "no triggerer picked up the sensor's trigger"
        time.sleep(0.5)
    [(first_triggerer,)] = faults.query("SELECT t.triggerer_id FROM task_instance ti JOIN trigger t "
                                        "ON t.id = ti.trigger_id WHERE ti.dag_id = 'fault_gate' AND ti.run_id = :r",
                                        r=run_id)

    faults.kill("triggerer")  # SIGKILL to its process group: the triggerer and its trigger runner
    faults.store().materialize(*WINDOW, [view], version="v0")  # the data arrives while no triggerer runs
    time.sleep(3)
    [wait] = faults.task_instances("fault_gate", run_id)
    assert wait["state"] == "deferred", wait  # nothing else may resume it
    faults.start("triggerer")

    assert faults.wait_for_run("fault_gate", run_id, timeout=180) == "success", \
        faults.failure_logs("fault_gate", run_id)
    event = faults.xcom("fault_gate", run_id, "wait")
    assert (event["status"], event["deferred"], event["found_entities"]) == ("passed", True, ENTITIES)
    assert try_numbers(faults, "fault_gate", run_id) == {"wait": 1}  # resumed, not retried
    # The trigger ran again in the new triggerer (trigger logs are named after the triggerer's job id).
    triggerers = [r[0] for r in faults.query("SELECT id FROM job WHERE job_type = 'TriggererJob' ORDER BY id")]
    assert first_triggerer in triggerers and triggerers[-1] != first_triggerer
    resumed_by = [p for p in (faults.home / "logs").rglob(f"*trigger.{triggerers[-1]}.log")
                  if f"run_id={run_id}" in str(p)]
    assert resumed_by, "the new triggerer left no log of the sensor's trigger"
    assert_clean_outcome(faults, view, promoted=False)


def test_two_rollouts_of_one_view_at_once_promote_once(faults):
    view = "fault_race"
    add_view(faults, view)
    revision = workspace_revision(faults)
    with workspace_locked(faults):
        # Both runs plan against the same revision, then queue up at the workspace lock.
        first = faults.trigger("feature_rollout_manual", rollout_conf(view))
        second = faults.trigger("feature_rollout_manual", rollout_conf(view))
        wait_for_lock_waiters(faults, 2)
        assert versions(faults, view) == []
    states = {run: faults.wait_for_run("feature_rollout_manual", run) for run in (first, second)}

    assert sorted(states.values()) == ["failed", "success"], states
    [won] = [run for run, state in states.items() if state == "success"]
    [lost] = [run for run, state in states.items() if state == "failed"]
    lost_states = faults.task_states("feature_rollout_manual", lost)
    assert lost_states["rollout.apply"] == ["failed"] and "success" not in lost_states.get("rollout.promote", [])
    assert try_numbers(faults, "feature_rollout_manual", lost)["rollout.apply"] == 1  # a stale plan: no retry
    # Plans are stored under a digest of their content: both runs made the same plan, which only one applied.
    [(plan_id, applied_by)] = faults.query("SELECT id, run_id FROM plans WHERE workspace = 'demo' "
                                           "AND changes_json::text LIKE :v", v=f'%"{view}"%')
    assert applied_by == f"feature_rollout_manual/{won}/rollout.apply"
    # The loser read the plan before the lock and the revision after it: a StalePlanError, without retry.
    stale = rf"Plan '{plan_id}' (was made at revision {revision} of workspace 'demo', which is now at revision " \
            rf"{revision + 1}|has already been applied); nothing was changed"
    assert re.search(stale, faults.task_logs("feature_rollout_manual", "rollout.apply", lost))
    assert workspace_revision(faults) == revision + 2  # the apply and the promotion of the winner, nothing else
    runs = assert_clean_outcome(faults, view, promoted=True)
    assert {r["run_id"].split("/")[1] for r in runs} == {won}


@contextlib.contextmanager
def watching_readiness(deployment: Deployment, view: str) -> Iterator[list[tuple[float, bool, int]]]:
    """Sample, every 0.2 s, readiness of v0 of ``view`` as a gate sees it and the row keys really in Redis
    right after: ``(time, ready, keys)``."""
    samples: list[tuple[float, bool, int]] = []
    stop = threading.Event()

    def watch() -> None:
        store = deployment.store()
        while not stop.is_set():
            try:
                ready = store.readiness(view, 0, *WINDOW).ready
            except Exception:  # the table went with Redis' data, or Redis is down: not ready either
                ready = False
            samples.append((time.monotonic(), ready, redis_row_keys(deployment, view)))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield samples
    finally:
        stop.set()
        watcher.join(timeout=10)


@pytest.fixture
def redis_loses_its_data(faults: Deployment) -> Iterator[None]:
    """For cases that restart Redis: afterwards, put back what it lost, for the cases after them."""
    yield
    ensure_redis()
    restore_online_tables(faults)


def test_redis_restarted_mid_materialization_is_rematerialized_by_the_retry(faults, redis_loses_its_data):
    view = "fault_redis"
    add_view(faults, view)
    faults.store().apply(no_promote=True)
    run_id = faults.trigger("fault_materialize", {"view": view, "version": "v0", "pace": PACE_SECONDS})
    with watching_readiness(faults, view) as samples:
        wait_mid_materialization(faults, view, run_id)
        assert_half_done_is_invisible(faults, view)
        restarted_at = time.monotonic()
        restart_redis()  # every key is gone, the table's marker with them
        assert redis_row_keys(faults, view) == 0
        state = faults.wait_for_run("fault_materialize", run_id, timeout=180)

    assert state == "success", faults.failure_logs("fault_materialize", run_id)
    assert try_numbers(faults, "fault_materialize", run_id) == {"materialize": 2}
    runs = assert_clean_outcome(faults, view, promoted=False)
    failed, retried = runs
    # The next chunk found the table gone: the run failed (recorded as such), and the retry, which creates the
    # table first, wrote every row again.
    assert failed["status"] == "failed" and "does not exist" in failed["error"], failed
    assert retried["rows_written"] == ENTITIES
    # Readiness was never reported while rows were missing, before or after the restart.
    assert any(not ready and 0 < keys < ENTITIES for _, ready, keys in samples), "the watcher saw no half-done run"
    assert not [s for s in samples if s[1] and s[2] < ENTITIES], samples
    assert not [s for s in samples if s[1] and s[0] < restarted_at], samples


def test_a_rollout_after_redis_lost_its_data_ends_successful(faults, redis_loses_its_data):
    view = "fault_after_redis"
    add_view(faults, view)
    restart_redis()  # the online tables of every earlier version are gone
    run_id = faults.trigger("feature_rollout_manual", rollout_conf(view))
    state = faults.wait_for_run("feature_rollout_manual", run_id)
    states = faults.task_states("feature_rollout_manual", run_id)
    assert states["rollout.promote"] == ["success"], states
    assert state == "success", states  # the report shows the lost tables instead of failing on them
    assert_clean_outcome(faults, view, promoted=True)
    log = faults.task_logs("feature_rollout_manual", "report", run_id)
    assert "rows online: table missing" in log, log[-3000:]


def test_postgres_down_at_the_end_of_a_materialization_is_retried(faults):
    view = "fault_pg_materialize"
    add_view(faults, view)
    faults.store().apply(no_promote=True)
    with faults.components_may_exit(f"PostgreSQL outage during the materialization of {view}"):
        run_id = faults.trigger("fault_materialize", {"view": view, "version": "v0", "pace": PACE_SECONDS})
        pid = wait_mid_materialization(faults, view, run_id)
        with postgres_stopped():
            # Down until the run has written its last chunk, so that recording its success meets the outage.
            deadline = time.monotonic() + 30
            while redis_row_keys(faults, view) < ENTITIES and _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2)
            faults.events.append(f"{view}: PostgreSQL down for the end of the run; task process alive at the "
                                 f"end of the outage: {_alive(pid)}")
        state = faults.wait_for_run("fault_materialize", run_id, timeout=240)
        assert state == "success", faults.failure_logs("fault_materialize", run_id)
        assert try_numbers(faults, "fault_materialize", run_id) == {"materialize": 2}
        first_try = faults.task_logs("fault_materialize", "materialize", run_id)
        assert "RegistryUnavailableError" in first_try  # recording the run's success met the outage
    runs = assert_clean_outcome(faults, view, promoted=False)
    # The first try wrote every row, then could not record it: its run stayed "running", never covering
    # anything, until the retry (which found every row already there) superseded it.
    assert [(r["status"], r["rows_written"]) for r in runs] == [("superseded", 0), ("succeeded", 0)]


def test_postgres_restarted_during_an_apply_applies_nothing_then_the_retry_applies_the_plan(faults):
    view = "fault_pg_apply"
    add_view(faults, view)
    revision = workspace_revision(faults)
    with faults.components_may_exit(f"PostgreSQL restart during the apply of {view}"):
        with workspace_locked(faults):
            run_id = faults.trigger("feature_rollout_manual", rollout_conf(view))
            wait_for_lock_waiters(faults, 1)  # the apply's transaction is open, waiting for the lock
            with postgres_stopped():
                time.sleep(2)
        # All of the plan or nothing of it: the version exists exactly when the plan is marked applied and
        # the revision has moved (right after the restart, before the retry, that is nothing).
        [(plan_id, applied)] = faults.query("SELECT id, applied_at IS NOT NULL FROM plans WHERE workspace = 'demo' "
                                            "AND changes_json::text LIKE :v", v=f'%"{view}"%')
        seen = (applied, versions(faults, view), workspace_revision(faults))
        assert seen in ((False, [], revision), (True, [(0, "staged")], revision + 1)), seen
        faults.events.append(f"{view}: right after the restart the plan was {'' if applied else 'not '}applied")
        state = faults.wait_for_run("feature_rollout_manual", run_id, timeout=300)
        assert state == "success", faults.failure_logs("feature_rollout_manual", run_id)
        assert try_numbers(faults, "feature_rollout_manual", run_id)["rollout.apply"] == 2
    assert faults.query("SELECT applied_at IS NOT NULL, applied_revision FROM plans WHERE id = :p", p=plan_id) \
        == [(True, revision + 1)]
    assert workspace_revision(faults) == revision + 2  # the apply and the promotion
    assert_clean_outcome(faults, view, promoted=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists()
