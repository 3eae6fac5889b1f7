"""The rollout under a real Airflow: api-server, scheduler (LocalExecutor), dag-processor and triggerer
as separate processes, Airflow's metadata and the registry on PostgreSQL, the Redis online store
(see :mod:`tests.system.deployment`).

Checks: the manual rollout DAG, triggered through the REST API with a JWT and followed through it, runs
to success and the promoted version serves online reads; a deferrable sensor really goes through the
triggerer (it defers before the data exists and resumes when a parallel task has materialized it); the
downstream DAG scheduled on the promotion asset runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.system.deployment import END, START, Deployment, airflow_deployment

pytestmark = pytest.mark.slow

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


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with airflow_deployment(tmp_path_factory.mktemp("system"),
                            extra_dags={"system_deferral.py": DEFERRAL_DAG}) as running:
        yield running


def test_the_rollout_runs_under_a_real_scheduler_and_the_consumer_follows(deployment):
    conf = {"views": ["driver_stats"], "start": START, "end": END, "chunk_hours": 12, "sample_size": 50}
    run_id = deployment.trigger("feature_rollout_manual", conf)  # POST /api/v2/dags/.../dagRuns with a JWT
    state = deployment.wait_for_run("feature_rollout_manual", run_id)
    states = deployment.task_states("feature_rollout_manual", run_id)
    assert state == "success", f"{states}\n{deployment.failure_logs('feature_rollout_manual', run_id)}"
    assert states["rollout.materialize"] == ["success", "success"] and states["rollout.promote"] == ["success"]
    [run] = [r for r in deployment.runs("feature_rollout_manual") if r["dag_run_id"] == run_id]
    assert run["logical_date"] is None and run["conf"]["views"] == ["driver_stats"]

    store = deployment.store()
    assert store.get_feature_view("driver_stats").current_version_number == 0
    values = store.get_online_features(["driver_stats:conv_rate"], [{"driver_id": 1001}]).to_dict()
    assert values["conv_rate"][0] is not None  # served from Redis
    # The promotion's asset event schedules the downstream DAG.
    assert deployment.wait_for_any_run("feature_rollout_consumer", timeout=180) == "success"


def test_a_sensor_defers_to_the_real_triggerer(deployment):
    from tests.conftest import add_feature

    add_feature(deployment.repo)
    store = deployment.store()
    store.apply(no_promote=True)  # v1 staged, not materialized: the sensor must wait for it
    run_id = deployment.trigger("system_deferral")
    assert deployment.wait_for_run("system_deferral", run_id) == "success", \
        deployment.task_states("system_deferral", run_id)
    event = deployment.xcom("system_deferral", run_id, "wait")
    assert event["status"] == "passed" and event["deferred"] is True
    trigger_logs = list((deployment.home / "logs").rglob("*trigger*"))
    assert any("system_deferral" in str(p) for p in trigger_logs), "no triggerer log for the sensor"
    triggerer_log = (deployment.home / "triggerer.log").read_text(errors="replace")
    assert "FeatureGateTrigger" in triggerer_log or any(
        "populated gate" in p.read_text(errors="replace") for p in trigger_logs if p.is_file())
