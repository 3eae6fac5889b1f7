"""Running the example DAGs with ``dag.test()`` and reading what they left behind (states, XCom, assets)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

DAGS = Path(__file__).resolve().parents[2] / "dags"


def load_dag(name: str) -> Any:
    """The DAG object of ``dags/{name}.py`` (dag.test() serializes it from the dags folder itself)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", DAGS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run(name: str, conf: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    kwargs.setdefault("logical_date", None)  # as a manual run from the UI or the API in Airflow 3
    return load_dag(name).test(run_conf=conf or {}, **kwargs)


def states(dag_run: Any) -> dict[str, list[str]]:
    """Task id -> states of its (mapped) instances."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state).filter(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id).all()
    result: dict[str, list[str]] = {}
    for task_id, _, state in sorted(rows, key=lambda r: (r[0], r[1])):
        result.setdefault(task_id, []).append(str(state.value if hasattr(state, "value") else state))
    return result


def xcom(dag_run: Any, task_id: str, key: str = "return_value") -> list[Any]:
    """The values of ``key`` pushed by ``task_id`` in ``dag_run``, one per (mapped) instance."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel.map_index, XComModel.value).filter(
            XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id, XComModel.task_id == task_id,
            XComModel.key == key).order_by(XComModel.map_index).all()
    return [XComModel.deserialize_value(row) for row in rows]


def snapshot(dag_run: Any, *xcom_tasks: str, keys: tuple[str, ...] = ("return_value",)) -> dict[str, Any]:
    """What a run left, read at once: ``dag.test()`` deletes a DAG's earlier runs when it starts another."""
    return {
        "state": str(getattr(dag_run.state, "value", dag_run.state)),
        "run_id": dag_run.run_id,
        "states": states(dag_run),
        "xcom": {(task, key): xcom(dag_run, task, key) for task in xcom_tasks for key in keys},
    }


def asset_events(uri_prefix: str) -> list[tuple[str, dict[str, Any]]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(AssetModel.uri, AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id) \
            .filter(AssetModel.uri.like(f"{uri_prefix}%")).order_by(AssetEvent.id).all()
    return [(uri, dict(extra or {})) for uri, extra in rows]
