"""A real Airflow deployment for system tests, one per test module.

``airflow_deployment(base)`` starts api-server, scheduler (LocalExecutor), dag-processor and triggerer as
separate processes, each in its own session (so that its process group holds everything it forks), on a
fresh PostgreSQL database that also holds the registry, with the Redis online store under a key prefix
of its own. On exit every process group is stopped by its PID, leftovers that still carry the
deployment's ``AIRFLOW_HOME`` are killed by PID, the database is dropped and the Redis keys deleted.

DAG runs are triggered and followed through the REST API with a JWT of the simple auth manager's
generated admin password (``POST /auth/token``); registry facts are read from the database itself.
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
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from tests.conftest import DEMO_END, PG_URL, REDIS_URL, delete_redis_prefix, require_postgres, require_redis

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
#: The backfill window the system tests roll out: the last day of the demo data.
START = "2026-01-07T00:00:00+00:00"
END = DEMO_END.isoformat()
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
FINISHED = ("success", "failed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_processes(procs: list[subprocess.Popen[bytes]], grace: float = 15) -> None:
    """SIGTERM every process group at once, SIGKILL what is left after ``grace`` seconds (idle
    LocalExecutor workers ignore SIGTERM). Groups are addressed by the PID of their leader."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group may outlive its leader
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def processes_with_home(home: Path) -> list[int]:
    """PIDs of processes whose environment names ``home`` as ``AIRFLOW_HOME`` (this deployment's)."""
    marker = f"AIRFLOW_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            found.append(int(entry.name))
    return found


@dataclass
class Deployment:
    """A running deployment; ``events`` records what the tests did to it and what it did in return."""

    base: Path
    env: dict[str, str]
    home: Path
    dags: Path
    repo: Path
    database: str
    metadata_url: str
    api_port: int
    redis_prefix: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    #: Set (to the reason) while components may exit and are to be restarted, e.g. around a database outage.
    reviving: str | None = None
    _token: str | None = None

    # --- the feature store the DAGs use ---------------------------------------------------------------

    def store(self) -> Any:
        """The repo's feature_store.yaml (Redis online store) with the registry in Airflow's database."""
        from feature_rollout.config import load_config
        from feature_rollout.store import FeatureStore

        return FeatureStore(self.repo, config=load_config(self.repo).with_overrides(registry_url=self.metadata_url))

    def query(self, sql: str, **params: Any) -> list[Any]:
        engine = sa.create_engine(self.metadata_url, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(sql), params).all())
        finally:
            engine.dispose()

    def airflow(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, \
            f"airflow {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        return result

    # --- processes --------------------------------------------------------------------------------------

    def start(self, name: str) -> None:
        args = {"api-server": ["api-server", "--port", str(self.api_port), "-H", "127.0.0.1"]}.get(name, [name])
        with open(self.home / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen([AIRFLOW, *args], env=self.env, stdout=log,
                                                    stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, name: str) -> int:
        """SIGKILL the process group of component ``name`` (a crash: the component and whatever it forked) and
        reap its leader; returns the leader's PID. ``start(name)`` brings it back."""
        proc = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return proc.pid

    def stop(self, name: str) -> None:
        stop_processes([self.processes[name]])

    def check_alive(self) -> None:
        """Every component runs (or, while ``reviving`` is set, runs again)."""
        if self.reviving:
            self.revive(self.reviving)
            return
        for name, proc in self.processes.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}; see {self.home / (name + '.log')}"

    @contextlib.contextmanager
    def components_may_exit(self, why: str) -> Iterator[None]:
        """Inside the block, components that exit are restarted (and recorded) instead of failing the test."""
        self.reviving = why
        try:
            yield
        finally:
            self.reviving = None

    def revive(self, why: str) -> list[str]:
        """Restart components that have exited (e.g. after a database outage), recording it in ``events``."""
        restarted = []
        for name, proc in list(self.processes.items()):
            if proc.poll() is not None:
                self.events.append(f"{why}: {name} had exited with {proc.returncode}; restarted")
                self.stop(name)  # whatever its group still holds
                self.start(name)
                restarted.append(name)
        return restarted

    # --- REST API ---------------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def token(self, refresh: bool = False) -> str:
        """A JWT for the generated admin password (``POST /auth/token``)."""
        if self._token is None or refresh:
            passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
            reply = httpx.post(f"{self.api_url}/auth/token", json={"username": "admin", "password": passwords["admin"]},
                               timeout=10)
            assert reply.status_code in (200, 201), f"POST /auth/token: {reply.status_code} {reply.text[:500]}"
            self._token = str(reply.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One authenticated request to ``/api/v2{path}`` (a new token once on 401)."""
        for attempt in (1, 2):
            reply = httpx.request(method, f"{self.api_url}/api/v2{path}", timeout=15,
                                  headers={"Authorization": f"Bearer {self.token(refresh=attempt == 2)}"}, **kwargs)
            if reply.status_code != 401:
                break
        return reply

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """``POST /dags/{dag_id}/dagRuns`` (no logical date, like a manual run); returns the run id."""
        reply = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf or {})})
        assert reply.status_code == 200, f"triggering {dag_id}: {reply.status_code} {reply.text[:1000]}"
        return str(reply.json()["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        """The run's state from ``GET /dags/{dag_id}/dagRuns/{run_id}``; ``None`` while the API cannot say."""
        try:
            reply = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        except httpx.HTTPError:
            return None
        return str(reply.json()["state"]) if reply.status_code == 200 else None

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Poll the run's state through the REST API until it finishes (API errors count as "not yet")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            state = self.run_state(dag_id, run_id)
            if state in FINISHED:
                return state
            time.sleep(2)
        raise AssertionError(f"{dag_id} {run_id} did not finish in {timeout}s: {self.task_states(dag_id, run_id)}")

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        reply = self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})
        assert reply.status_code == 200, reply.text[:500]
        return list(reply.json()["dag_runs"])

    def wait_for_any_run(self, dag_id: str, timeout: float = 180) -> str:
        """The state of the first run of ``dag_id`` to finish (for DAGs the scheduler starts by itself)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            states = [r["state"] for r in self.runs(dag_id)]
            if any(s in FINISHED for s in states):
                return "success" if "success" in states else "failed"
            time.sleep(2)
        raise AssertionError(f"no run of {dag_id} finished in {timeout}s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        reply = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 200})
        assert reply.status_code == 200, reply.text[:500]
        return sorted(reply.json()["task_instances"], key=lambda ti: (ti["task_id"], ti["map_index"]))

    def task_states(self, dag_id: str, run_id: str) -> dict[str, list[str | None]]:
        """``{task_id: [state per map index]}``."""
        try:
            instances = self.task_instances(dag_id, run_id)
        except (AssertionError, httpx.HTTPError) as err:
            return {"(API unavailable)": [str(err)[:200]]}
        states: dict[str, list[str | None]] = {}
        for ti in instances:
            states.setdefault(ti["task_id"], []).append(ti["state"])
        return states

    def wait_for_task(self, dag_id: str, run_id: str, task_id: str, states: tuple[str, ...],
                      timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            for ti in self.task_instances(dag_id, run_id):
                if ti["task_id"] == task_id and ti["state"] in states:
                    return ti
            time.sleep(1)
        raise AssertionError(f"{dag_id}.{task_id} did not reach {states} in {timeout}s: "
                             f"{self.task_states(dag_id, run_id)}")

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        rows = self.query("SELECT value FROM xcom WHERE dag_id = :d AND run_id = :r AND task_id = :t AND key = :k",
                          d=dag_id, r=run_id, t=task_id, k=key)
        assert rows, f"no XCom {key} of {dag_id}.{task_id} in {run_id}"
        value = rows[0][0]
        return value if isinstance(value, dict | list) else json.loads(value)

    def task_logs(self, dag_id: str, task_id: str | None = None, run_id: str | None = None) -> str:
        """The text of the task logs of ``dag_id`` (of one task and run, when given)."""
        texts = []
        for path in sorted((self.home / "logs").rglob("*")):
            text_path = str(path)
            if not path.is_file() or f"dag_id={dag_id}" not in text_path:
                continue
            if task_id is not None and f"task_id={task_id}" not in text_path:
                continue
            if run_id is not None and f"run_id={run_id}" not in text_path:
                continue
            texts.append(f"--- {path}\n{path.read_text(errors='replace')}")
        return "\n".join(texts)

    def failure_logs(self, dag_id: str, run_id: str) -> str:
        """The ends of the logs of the failed tasks of a run (for assertion messages)."""
        failed = [t for t, states in self.task_states(dag_id, run_id).items() if "failed" in states]
        return "\n".join(self.task_logs(dag_id, task_id, run_id)[-3000:] for task_id in failed)


def _wait_until_ready(deployment: Deployment, dag_files: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    healthy = parsed = False
    while time.monotonic() < deadline and not (healthy and parsed):
        deployment.check_alive()
        try:
            healthy = httpx.get(f"{deployment.api_url}/api/v2/monitor/health", timeout=3).status_code == 200
        except httpx.HTTPError:
            healthy = False
        try:
            parsed = deployment.query("SELECT count(*) FROM dag WHERE NOT is_stale")[0][0] >= dag_files
        except sa.exc.SQLAlchemyError:
            parsed = False
        time.sleep(2)
    assert healthy and parsed, f"Airflow did not come up (api healthy: {healthy}, DAGs parsed: {parsed})"


@contextlib.contextmanager
def airflow_deployment(base: Path, *, example_dags: Collection[str] | None = None,
                       extra_dags: Mapping[str, str] | None = None,
                       extra_env: Mapping[str, str] | None = None) -> Iterator[Deployment]:
    """Start a deployment in the empty folder ``base``, yield it, and take it all down again.

    :param example_dags: file names of the example DAGs of ``dags/`` to deploy (default: all of them).
    :param extra_dags: ``{file name: source}`` written next to them.
    :param extra_env: Airflow settings (``AIRFLOW__...``) on top of the defaults below.
    """
    require_postgres()
    require_redis()
    from feature_rollout.scaffold import init_repo

    database = f"fr_system_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    metadata_url = sa.engine.make_url(PG_URL).set(database=database).render_as_string(hide_password=False)
    home, dags = base / "airflow", base / "dags"
    home.mkdir()
    dags.mkdir()
    for path in (ROOT / "dags").glob("*.py"):
        if example_dags is None or path.name in example_dags:
            shutil.copy(path, dags / path.name)
    for name, source in (extra_dags or {}).items():
        (dags / name).write_text(source)
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
        **(extra_env or {}),
    })
    # The online store is Redis, under a key prefix of this deployment (an option only feature_store.yaml sets).
    (repo / "feature_store.yaml").write_text(
        "project: demo\nregistry: data/registry.db\n"
        f"online_store:\n  type: redis\n  url: {REDIS_URL}\n  key_prefix: {prefix}\n")
    deployment = Deployment(base, env, home, dags, repo, database, metadata_url, api_port, prefix)
    try:
        deployment.airflow("db", "migrate", timeout=300)
        for name in COMPONENTS:
            deployment.start(name)
        _wait_until_ready(deployment, len(list(dags.glob("*.py"))))
        yield deployment
    finally:
        stop_processes(list(deployment.processes.values()))
        for pid in processes_with_home(home):  # anything that left its group (none expected)
            deployment.events.append(f"teardown: killed leftover process {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        from feature_rollout.registry.engine import dispose_engines

        dispose_engines()  # this process's pooled registry connections to the database about to go
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
        delete_redis_prefix(prefix)
