"""The feature-rollout command: the flows, the JSON outputs, exit codes 0/1/2 and no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from feature_rollout.cli import main
from feature_rollout.registry.migrate import HEAD_REVISION
from tests.conftest import require_postgres

BIN = Path(sys.executable).parent / "feature-rollout"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    assert main(["init", str(root), "--project", "demo", "--drivers", "5", "--days", "1"]) == 0
    return root


def run(repo: Path, *args: str, capsys) -> tuple[int, str, str]:
    code = main(["--repo", str(repo), *args])
    out, err = capsys.readouterr()
    return code, out, err


def widen(repo: Path) -> None:
    path = repo / "features.py"
    old = '        Field(name="trips_today", dtype=Int64),\n'
    path.write_text(path.read_text().replace(old, old + '        Field(name="avg_daily_trips", dtype=Int64),\n'))


def test_init_writes_a_repo_and_refuses_a_non_empty_folder(repo, capsys):
    assert sorted(p.name for p in repo.iterdir()) == ["data", "feature_store.yaml", "features.py"]
    assert (repo / "data" / "driver_stats.parquet").stat().st_size > 0
    capsys.readouterr()
    assert main(["init", str(repo)]) == 2
    assert "is not empty" in capsys.readouterr().err


def test_plan_then_apply_exactly_that_plan(repo, tmp_path, capsys):
    code, out, _ = run(repo, "plan", "--json-out", str(tmp_path / "plan.json"), capsys=capsys)
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert code == 0 and f"feature-rollout apply --plan-id {plan['id']}" in out
    assert "+ create feature view driver_stats v0 (active) [table demo_driver_stats]" in out
    code, out, _ = run(repo, "apply", "--plan-id", plan["id"], capsys=capsys)
    assert code == 0 and "is now at revision 1" in out and "created driver_stats v0" in out
    code, _, err = run(repo, "apply", "--plan-id", plan["id"], capsys=capsys)
    assert code == 1 and "has already been applied" in err and "Traceback" not in err


def test_stage_promote_rollback_release(repo, capsys):
    run(repo, "apply", capsys=capsys)
    widen(repo)
    code, out, _ = run(repo, "apply", "--no-promote", capsys=capsys)
    assert code == 0 and "^ new version v1 (staged)" in out and "created driver_stats v1" in out
    code, out, _ = run(repo, "feature-views", "list-versions", "driver_stats", capsys=capsys)
    assert [line.split()[:2] for line in out.splitlines()[2:]] == [["v0", "active"], ["v1", "staged"]]
    code, _, err = run(repo, "promote", "driver_stats", "v1", capsys=capsys)
    assert code == 1 and "--skip-gates" in err
    code, out, _ = run(repo, "promote", "driver_stats", "v1", "--skip-gates", "--reason", "ok", capsys=capsys)
    assert code == 0 and out.strip() == "Promoted driver_stats: active v0 -> v1"
    code, out, _ = run(repo, "rollback", "driver_stats", "--reason", "bad", capsys=capsys)
    assert code == 0 and "v1 is held" in out
    code, out, _ = run(repo, "plan", capsys=capsys)
    assert "held by rollback" in out and "No changes to apply" in out
    code, out, _ = run(repo, "release-hold", "driver_stats", capsys=capsys)
    assert code == 0 and "Released the hold on driver_stats (v1)" in out
    code, out, _ = run(repo, "apply", capsys=capsys)
    assert "driver_stats: active v0 -> v1" in out
    code, out, _ = run(repo, "feature-views", "history", "driver_stats", "--json", capsys=capsys)
    assert [e["kind"] for e in json.loads(out)] == ["promote", "release", "hold", "rollback", "promote", "promote"]


def test_json_outputs(repo, capsys):
    code, out, _ = run(repo, "plan", "--json", capsys=capsys)
    plan = json.loads(out)
    assert code == 0 and plan["summary"] == {"create": 4} and plan["has_changes"] is True
    code, out, _ = run(repo, "apply", "--json", capsys=capsys)
    result = json.loads(out)
    assert code == 0 and result["applied"] is True and result["promoted"] == [
        {"view": "driver_stats", "from_version": None, "to_version": 0}]
    code, out, _ = run(repo, "feature-views", "list-versions", "driver_stats", "--json", capsys=capsys)
    [version] = json.loads(out)
    assert code == 0
    assert (version["version"], version["state"], version["online_table"]) == ("v0", "active", "demo_driver_stats")
    code, out, _ = run(repo, "workspace", "list", "--json", capsys=capsys)
    assert code == 0 and [(w["name"], w["live"]) for w in json.loads(out)] == [("demo", True)]


def test_workspaces(repo, capsys):
    assert run(repo, "workspace", "create", "staging", capsys=capsys)[1].strip() == \
        "Created development workspace 'staging'."
    code, _, err = run(repo, "workspace", "create", "staging", capsys=capsys)
    assert code == 2 and "already exists" in err
    code, out, _ = run(repo, "-w", "staging", "apply", capsys=capsys)
    assert code == 0 and "workspace 'staging' is now at revision 1" in out
    code, _, err = run(repo, "plan", "--workspace", "nope", capsys=capsys)
    assert code == 2 and "workspace create nope" in err


@pytest.mark.parametrize(("args", "code", "message"), [
    (["promote", "driver_stats", "v-1", "--skip-gates"], 2, "'v-1' is not a valid version"),
    (["promote", "driver_stats", "v9", "--skip-gates"], 2, "no version v9; existing versions: v0"),
    (["promote", "nope", "v0", "--skip-gates"], 2, "Feature view 'nope' does not exist"),
    (["feature-views", "list-versions", "nope"], 2, "Feature view 'nope' does not exist"),
    (["apply", "--plan-id", "0123456789abcdef"], 2, "No stored plan with id '0123456789abcdef'"),
    (["rollback", "driver_stats"], 1, "no previous version"),
])
def test_user_errors_exit_with_a_message(repo, capsys, args, code, message):
    run(repo, "apply", capsys=capsys)
    got, out, err = run(repo, *args, capsys=capsys)
    assert (got, out) == (code, "")
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_broken_repo_file(repo, capsys):
    (repo / "broken.py").write_text("from feature_rollout import Entity\nbad = Entity(name='2fast')\n")
    code, _, err = run(repo, "plan", capsys=capsys)
    assert code == 2 and "broken.py: The entity name '2fast' is not allowed" in err


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **(env or {})})


def test_the_installed_command_exit_codes_and_no_tracebacks(tmp_path):
    assert cli("--version").stdout.startswith("feature-rollout ")
    usage = cli("promote")
    assert usage.returncode == 2 and "usage:" in usage.stderr
    missing = cli("--repo", str(tmp_path / "none"), "plan")
    assert missing.returncode == 2 and "No feature_store.yaml" in missing.stderr and "Traceback" not in missing.stderr


def test_an_unreachable_registry_is_one_line_with_the_password_masked(tmp_path):
    (tmp_path / "feature_store.yaml").write_text(
        "project: demo\nregistry: postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test\n")
    result = cli("--repo", str(tmp_path), "plan")
    assert result.returncode == 1
    assert "Cannot reach the registry at postgresql+psycopg://postgres:***@127.0.0.1:1/test" in result.stderr
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr


def test_an_unwritable_sqlite_registry(tmp_path):
    (tmp_path / "feature_store.yaml").write_text("project: demo\nregistry: /proc/forbidden/registry.db\n")
    result = cli("--repo", str(tmp_path), "plan")
    assert result.returncode == 1 and "Cannot create the folder of the SQLite registry" in result.stderr


def test_registry_upgrade_command(tmp_path):
    require_postgres()
    result = cli("init", str(tmp_path / "r"))
    assert result.returncode == 0
    first = cli("--repo", str(tmp_path / "r"), "registry", "upgrade")
    assert first.returncode == 0 and f"from empty to {HEAD_REVISION}" in first.stdout
    again = cli("--repo", str(tmp_path / "r"), "registry", "upgrade")
    assert "nothing to do" in again.stdout
