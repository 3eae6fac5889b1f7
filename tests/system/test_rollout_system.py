"""The rollout under a real Airflow: api-server, scheduler (LocalExecutor), dag-processor and triggerer
as separate processes, Airflow's metadata and the registry on PostgreSQL, the Redis online store.

Checks: the manual rollout DAG runs to success when triggered from the CLI; a deferrable sensor
really goes through the triggerer (it defers before the data exists and resumes when a parallel task
has materialized it); the downstream DAG scheduled on the promotion asset runs. Every process is
started in its own session and stopped by PID (process group), then the database is dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import DEMO_END, PG_URL, REDIS_URL, require_postgres, require_redis

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
START = "2026-01-07T00:00:00+00:00"
END = DEMO_END.isoformat()

DEFERRAL_DAG = '''
"""System test: a sensor that must defer (its data arrives later, from a parallel task)."""
import time
from datetime import datetime

from airflow.sdk import DAG, task

from feature_rollout.sensors.feature_rollout import VersionPopulatedSensor

with DAG(dag_id="system_deferral", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    VersionPopulatedSensor(task_id="wait", view="driver_stats", version="v1", start="START", end="END",
                           deferrable=True, poke_interval=2, timeout=300)

    @task
    def late_materialization():
        time.sleep(20)  # the sensor has deferred long before
        from datetime import datetime as dt

        from feature_rollout.hooks.feature_registry import FeatureRegistryHook

        FeatureRegistryHook().get_conn().materialize(dt.fromisoformat("START"), dt.fromisoformat("END"),
                                                     ["driver_stats"], version="v1")

    late_materialization()
'''.replace("START", START).replace("END", END)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    env: dict[str, str]
    home: Path
    repo: Path
    metadata_url: str
    processes: dict[str, subprocess.Popen[bytes]]
    redis_prefix: str

    def store(self) -> Any:
        """The store the DAGs use: the repo's feature_store.yaml (Redis) with the registry in Airflow's database."""
        from feature_rollout.config import load_config
        from feature_rollout.store import FeatureStore

        return FeatureStore(self.repo, config=load_config(self.repo).with_overrides(registry_url=self.metadata_url))

    def airflow(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, \
            f"airflow {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        return result

    def query(self, sql: str, **params: Any) -> list[Any]:
        engine = sa.create_engine(self.metadata_url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(sql), params).all())
        finally:
            engine.dispose()

    def wait_for_run(self, dag_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            rows = self.query("SELECT state FROM dag_run WHERE dag_id = :d ORDER BY id DESC LIMIT 1", d=dag_id)
            if rows and rows[0][0] in ("success", "failed"):
                return str(rows[0][0])
            time.sleep(2)
        raise AssertionError(f"{dag_id} did not finish in {timeout}s: {self.task_states(dag_id)}")

    def task_states(self, dag_id: str) -> dict[str, list[str]]:
        rows = self.query("SELECT task_id, map_index, state FROM task_instance WHERE dag_id = :d ORDER BY 1, 2",
                          d=dag_id)
        states: dict[str, list[str]] = {}
        for task_id, _, state in rows:
            states.setdefault(task_id, []).append(state)
        return states

    def failure_logs(self, dag_id: str) -> str:
        """The ends of the logs of the failed tasks of ``dag_id`` (for assertion messages)."""
        failed = [t for t, states in self.task_states(dag_id).items() if "failed" in states]
        texts = []
        for task_id in failed:
            for path in (self.home / "logs").rglob(f"*dag_id={dag_id}*/**/task_id={task_id}*/*"):
                if path.is_file():
                    texts.append(f"--- {path}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(texts)

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}; see {self.home / (name + '.log')}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL what is left after a grace period (idle LocalExecutor
    workers ignore SIGTERM)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require_postgres()
    require_redis()
    from feature_rollout.scaffold import init_repo

    base = tmp_path_factory.mktemp("system")
    database = f"fr_system_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    metadata_url = sa.engine.make_url(PG_URL).set(database=database).render_as_string(hide_password=False)
    home, dags = base / "airflow", base / "dags"
    dags.mkdir()
    for path in (ROOT / "dags").glob("*.py"):
        shutil.copy(path, dags / path.name)
    (dags / "system_deferral.py").write_text(DEFERRAL_DAG)
    repo = init_repo(base / "repo", project="demo", drivers=20, days=3, end=DEMO_END)
    prefix = f"frsys{uuid.uuid4().hex[:8]}"
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "6",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 2,
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT": json.dumps({
            "conn_type": "feature_rollout", "extra": {
                "repo_path": str(repo), "registry_url": metadata_url}}),  # the registry shares Airflow's database
    })
    # The online store is Redis, under a key prefix of this test (an option only feature_store.yaml sets).
    (repo / "feature_store.yaml").write_text(
        "project: demo\nregistry: data/registry.db\n"
        f"online_store:\n  type: redis\n  url: {REDIS_URL}\n  key_prefix: {prefix}\n")
    deployment = Deployment(env, home, repo, metadata_url, {}, prefix)
    try:
        deployment.airflow("db", "migrate", timeout=300)
        for name, args in (("api-server", ["api-server", "--port", str(api_port), "-H", "127.0.0.1"]),
                           ("scheduler", ["scheduler"]), ("dag-processor", ["dag-processor"]),
                           ("triggerer", ["triggerer"])):
            log = open(home / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            deployment.processes[name] = subprocess.Popen([AIRFLOW, *args], env=env, stdout=log,
                                                          stderr=subprocess.STDOUT, start_new_session=True)
        _wait_until_ready(deployment, api_port)
        yield deployment
    finally:
        for proc in deployment.processes.values():
            _stop(proc)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.delete(prefix)
        client.close()


def _wait_until_ready(deployment: Deployment, api_port: int, timeout: float = 180) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    healthy = parsed = False
    while time.monotonic() < deadline and not (healthy and parsed):
        deployment.check_alive()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v2/monitor/health", timeout=3) as reply:
                healthy = reply.status == 200
        except OSError:
            healthy = False
        try:
            rows = deployment.query("SELECT count(*) FROM dag WHERE dag_id LIKE 'feature_rollout_%' "
                                    "OR dag_id = 'system_deferral'")
            parsed = rows[0][0] >= 6
        except sa.exc.SQLAlchemyError:
            parsed = False
        time.sleep(2)
    assert healthy and parsed, f"Airflow did not come up (api healthy: {healthy}, DAGs parsed: {parsed})"


def test_the_rollout_runs_under_a_real_scheduler_and_the_consumer_follows(deployment):
    conf = {"views": ["driver_stats"], "start": START, "end": END, "chunk_hours": 12, "sample_size": 50}
    deployment.airflow("dags", "trigger", "feature_rollout_manual", "--conf", json.dumps(conf))
    state = deployment.wait_for_run("feature_rollout_manual")
    states = deployment.task_states("feature_rollout_manual")
    assert state == "success", f"{states}\n{deployment.failure_logs('feature_rollout_manual')}"
    assert states["rollout.materialize"] == ["success", "success"] and states["rollout.promote"] == ["success"]

    store = deployment.store()
    assert store.get_feature_view("driver_stats").current_version_number == 0
    values = store.get_online_features(["driver_stats:conv_rate"], [{"driver_id": 1001}]).to_dict()
    assert values["conv_rate"][0] is not None  # served from Redis
    # The promotion's asset event schedules the downstream DAG.
    assert deployment.wait_for_run("feature_rollout_consumer", timeout=180) == "success"


def test_a_sensor_defers_to_the_real_triggerer(deployment):
    from tests.conftest import add_feature

    add_feature(deployment.repo)
    store = deployment.store()
    store.apply(no_promote=True)  # v1 staged, not materialized: the sensor must wait for it
    deployment.airflow("dags", "trigger", "system_deferral")
    assert deployment.wait_for_run("system_deferral") == "success", deployment.task_states("system_deferral")
    [value] = deployment.query("SELECT value FROM xcom WHERE dag_id = 'system_deferral' AND task_id = 'wait' "
                               "AND key = 'return_value'")[0]
    event = value if isinstance(value, dict) else json.loads(value)
    assert event["status"] == "passed" and event["deferred"] is True
    trigger_logs = list((deployment.home / "logs").rglob("*trigger*"))
    assert any("system_deferral" in str(p) for p in trigger_logs), "no triggerer log for the sensor"
    triggerer_log = (deployment.home / "triggerer.log").read_text(errors="replace")
    assert "FeatureGateTrigger" in triggerer_log or any(
        "populated gate" in p.read_text(errors="replace") for p in trigger_logs if p.is_file())
