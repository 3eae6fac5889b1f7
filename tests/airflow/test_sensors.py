"""The gate sensors in real DAG runs: a real deferral (the trigger polls while data arrives), the
timeout after a final check, a failed parity that fails at once without retry, and poke mode."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest

from tests.airflow.conftest import store_of
from tests.airflow.dagrun import snapshot
from tests.conftest import DEMO_END, add_feature

START = DEMO_END - timedelta(days=1)


def run_inline(dag, **kwargs):
    """dag.test() for a DAG defined in a test: serialize it into the dags-folder bundle first."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    with create_session() as session:
        update_dag_parsing_results_in_db("dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(),
                                         session=session)
    kwargs.setdefault("logical_date", None)
    return snapshot(dag.test(**kwargs), *[t.task_id for t in dag.tasks])


def sensor_dag(dag_id: str, sensor_cls, **sensor_kwargs):
    from airflow.sdk import DAG

    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        sensor_cls(task_id="wait", view="driver_stats", start=START.isoformat(), end=DEMO_END.isoformat(),
                   poke_interval=0.2, **sensor_kwargs)
    return dag


@pytest.fixture
def staged(rollout_repo, airflow_db):
    """v0 active and materialized, v1 staged and not materialized."""
    store = store_of(rollout_repo)
    store.apply()
    store.materialize(START, DEMO_END)
    add_feature(rollout_repo)
    store.apply(no_promote=True)
    return store


def test_the_sensor_defers_and_resumes_when_the_data_arrives(staged, monkeypatch):
    from feature_rollout.sensors.feature_rollout import VersionPopulatedSensor
    from feature_rollout.triggers import feature_rollout as triggers

    # The data arrives while the trigger polls: the sensor's own check before deferring found nothing
    # (it calls the unpatched function), so a success can only come through the trigger.
    polls: list[str] = []
    original = triggers.check_gate

    def poll_after_the_data_arrived(store, *args):
        if not polls:
            staged.materialize(START, DEMO_END, ["driver_stats"], version="v1")
        polls.append(threading.current_thread().name)
        return original(store, *args)

    monkeypatch.setattr(triggers, "check_gate", poll_after_the_data_arrived)
    dag = sensor_dag("deferral_populated", VersionPopulatedSensor, version="v1", deferrable=True, timeout=120)
    done = run_inline(dag)
    assert polls, "the trigger never polled: the sensor did not defer"
    assert done["states"]["wait"] == ["success"], done
    [event] = done["xcom"][("wait", "return_value")]
    assert event["status"] == "passed" and event["deferred"] is True  # resumed from the trigger
    assert (event["found_entities"], event["expected_entities"]) == (20, 20)


def test_the_sensor_times_out_after_a_final_check(staged):
    from feature_rollout.sensors.feature_rollout import VersionPopulatedSensor

    dag = sensor_dag("deferral_timeout", VersionPopulatedSensor, version="v1", deferrable=True, timeout=1)
    done = run_inline(dag)
    assert done["states"]["wait"] == ["failed"]
    assert done["xcom"][("wait", "return_value")] == []


def test_a_failed_parity_fails_the_gate_at_once_without_retry(staged):
    from feature_rollout.sensors.feature_rollout import PromotionGateSensor

    staged.materialize(START, DEMO_END, ["driver_stats"], version="v1")
    import pandas as pd

    spine = pd.DataFrame({"driver_id": [1001], "event_timestamp": [DEMO_END - timedelta(hours=3)]})
    # A deliberately impossible comparison: every compared column mapped onto another one.
    staged.parity("driver_stats@v0", "driver_stats@v1", spine, columns={"conv_rate": "acc_rate"})
    dag = sensor_dag("gate_failed", PromotionGateSensor, version="v1", deferrable=True, timeout=60, retries=3)
    began = time.monotonic()
    done = run_inline(dag)
    assert done["states"]["wait"] == ["failed"]  # not up_for_retry: failed for good
    assert time.monotonic() - began < 30


def test_poke_mode_works_without_a_triggerer(staged):
    from feature_rollout.sensors.feature_rollout import PromotionGateSensor

    staged.materialize(START, DEMO_END, ["driver_stats"], version="v1")
    staged.parity("driver_stats@v0", "driver_stats@v1", sample_size=50)
    dag = sensor_dag("gate_poke", PromotionGateSensor, version="v1", deferrable=False, timeout=30)
    done = run_inline(dag)
    assert done["states"]["wait"] == ["success"]
