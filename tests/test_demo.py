"""`make demo` runs scripts/demo.sh; run the same script here so that the README's command stays working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_script_runs_the_whole_command_line_rollout(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DEMO_DIR": str(tmp_path / "demo")}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True, env=env,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for expected in (
        "+ create feature view driver_stats v0 (active) [table demo_driver_stats]",
        "^ new version v1 (staged) of feature view driver_stats [table demo_driver_stats_v1]",
        "+ feature avg_daily_trips: Int64",
        "driver_stats v1 is ready for [",
        "Parity PASSED: demo/driver_stats@v1 vs demo/driver_stats@v0",
        "rows compared: 200; rows with a mismatch: 0",
        "Promoted driver_stats: active v0 -> v1",
        "v1 active: 50 rows online in demo_driver_stats_v1",
        "No changes to apply.",
    ):
        assert expected in out
    history = out.split("== Version history")[1]
    assert [line.split()[:2] for line in history.splitlines()[3:5]] == [["v0", "retired"], ["v1", "active"]]
