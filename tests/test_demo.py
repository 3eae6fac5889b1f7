"""`make demo` runs scripts/demo.sh; run the same script here so that the README's command keeps working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_script_runs_two_airflow_rollouts(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", DEMO_DIR=str(tmp_path / "demo"))
    result = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True, env=env,
                            timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert out.count("DagRun Finished: dag_id=feature_rollout_manual: state=success") == 2
    for expected in (
        "done task_id=rollout.materialize map_index=3",  # one day in 6-hour chunks, mapped
        "done task_id=rollout.gate",
        "done task_id=rollout.promote",
        "^ new version v1 (staged) of feature view driver_stats [table demo_driver_stats_v1]",
        "+ feature avg_daily_trips: Int64",
        "v1 active: 50 rows online in demo_driver_stats_v1",
        "Parity PASSED: demo/driver_stats@v1 vs demo/driver_stats@v0",
        "rows compared: 200; rows with a mismatch: 0",
    ):
        assert expected in out, expected
    history = out.split("== Version history")[1]
    assert [line.split()[:2] for line in history.splitlines()[3:5]] == [["v0", "retired"], ["v1", "active"]]
