"""Passwords never reach task logs, XCom, rendered templates or exceptions (DESIGN §12)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.airflow.dagrun import run, snapshot
from tests.conftest import DEMO_END

PASSWORD = "s3cr3t-Pa55w0rd-in-extra"


def test_a_rollout_with_a_password_leaks_it_nowhere(pg_schema_url, tmp_path, monkeypatch, capfd, airflow_db):
    import sqlalchemy as sa

    from feature_rollout.scaffold import init_repo

    repo = init_repo(tmp_path / "repo", project="secret", drivers=5, days=2, end=DEMO_END)
    # Trust authentication accepts any password: the run works, and the password travels everywhere a
    # careless provider would print it. It sits in an extra, which Airflow's log masker does not know.
    url = sa.engine.make_url(pg_schema_url).set(password=PASSWORD).render_as_string(hide_password=False)
    monkeypatch.setenv("AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT", json.dumps(
        {"conn_type": "feature_rollout", "extra": {"repo_path": str(repo), "registry_url": url}}))
    conf = {"views": [], "start": "2026-01-07T00:00:00+00:00", "end": "2026-01-08T00:00:00+00:00",
            "sample_size": 20}
    done = snapshot(run("feature_rollout_manual", conf), "rollout.plan", "rollout.apply", "rollout.promote", "report")
    assert done["state"] == "success", done["states"]

    captured = capfd.readouterr()
    assert "Feature store: repo" in captured.out + captured.err  # the hook did log its settings
    assert PASSWORD not in captured.out + captured.err
    assert PASSWORD not in json.dumps({str(k): v for k, v in done["xcom"].items()}, default=str)
    logs = [p.read_text(errors="replace") for p in Path(_airflow_home(), "logs").rglob("*") if p.is_file()]
    assert all(PASSWORD not in text for text in logs)
    assert PASSWORD not in _rendered_fields()


def _airflow_home() -> str:
    import os

    return os.environ["AIRFLOW_HOME"]


def _rendered_fields() -> str:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        return json.dumps([r.rendered_fields for r in session.query(RenderedTaskInstanceFields).all()], default=str)
