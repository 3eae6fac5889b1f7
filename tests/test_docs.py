"""The documentation site (mkdocs.yml, ADR 0011): ``mkdocs build --strict`` passes without a warning,
the reference pages are generated from the docstrings, and the build imports nothing of the package
(so it opens no database and does not initialise Airflow)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# A markdown link whose target is root-absolute: `[text](/dags/x.py)` or `[text](/README.md#anchor)`.
ROOT_ABSOLUTE_LINK = re.compile(r"\]\((/[^)\s#]*)(?:#[^)\s]*)?\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """Build the site once for this module: (site dir, build output, the build's AIRFLOW_HOME)."""
    tmp = tmp_path_factory.mktemp("docs")
    site_dir = tmp / "site"
    airflow_home = tmp / "airflow_home"
    airflow_home.mkdir()
    env = {
        **os.environ,
        # Importing Airflow creates files in its home: an empty home after the build shows that the
        # build did not import it (and so touched no metadata database).
        "AIRFLOW_HOME": str(airflow_home),
        # Material's end-of-life banner is a notice, not a problem with the pages (as in `make docs`).
        "NO_MKDOCS_2_WARNING": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return site_dir, output, airflow_home


@pytest.mark.slow
def test_strict_build_has_no_warnings(site: tuple[Path, str, Path]) -> None:
    _, output, _ = site
    problems = [line for line in output.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert problems == []
    assert "Documentation built in" in output


def anchors(page: Path) -> set[str]:
    """The ids mkdocstrings gives the objects it documents: their full dotted paths."""
    return set(re.findall(r'id="(feature_rollout[^"]*)"', page.read_text(encoding="utf-8")))


@pytest.mark.slow
def test_operator_reference_is_generated_from_docstrings(site: tuple[Path, str, Path]) -> None:
    site_dir, _, _ = site
    page = site_dir / "operators" / "index.html"
    expected = {
        "feature_rollout.hooks.feature_registry.FeatureRegistryHook",
        *(f"feature_rollout.operators.feature_rollout.{name}" for name in (
            "FeatureStorePlanOperator", "FeatureStoreApplyOperator", "MaterializeVersionOperator",
            "PromoteVersionOperator", "RollbackVersionOperator", "ParityCheckOperator")),
        "feature_rollout.sensors.feature_rollout.VersionPopulatedSensor",
        "feature_rollout.sensors.feature_rollout.PromotionGateSensor",
        "feature_rollout.triggers.feature_rollout.FeatureGateTrigger",
        "feature_rollout.task_groups.rollout_task_group",
    }
    assert expected - anchors(page) == set()
    # The docstrings' text, not only the names: a row of MaterializeVersionOperator's parameter table.
    assert "interval start (templated; ISO 8601 with a zone)." in page.read_text(encoding="utf-8")


@pytest.mark.slow
def test_api_reference_is_generated_from_docstrings(site: tuple[Path, str, Path]) -> None:
    site_dir, _, _ = site
    page = site_dir / "api" / "index.html"
    expected = {
        "feature_rollout.FeatureStore",
        "feature_rollout.FeatureStore.get_historical_features",
        "feature_rollout.FeatureStore.get_online_features",
        "feature_rollout.FeatureStore.list_feature_view_versions",
        *(f"feature_rollout.{name}" for name in ("Entity", "Field", "FileSource", "FeatureView", "FeatureService")),
        "feature_rollout.types.Float32",
        "feature_rollout.types.Array",
        *(f"feature_rollout.core.errors.{name}" for name in (
            "FeatureRolloutError", "StalePlanError", "PreventDestroyError", "FeatureViewPinConflict")),
    }
    assert expected - anchors(page) == set()
    assert "Point-in-time correct features for every row of" in page.read_text(encoding="utf-8")


@pytest.mark.slow
def test_build_imports_nothing_of_the_package(site: tuple[Path, str, Path]) -> None:
    _, _, airflow_home = site
    assert sorted(p.name for p in airflow_home.iterdir()) == []


def test_root_absolute_links_name_files_of_the_repository() -> None:
    """MkDocs leaves root-absolute links (`/dags/...`, read on GitHub from the repository root)
    unchecked; this checks them."""
    broken = []
    for page in sorted(DOCS.rglob("*.md")):
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
        for target in ROOT_ABSOLUTE_LINK.findall(text):
            if not (ROOT / target.lstrip("/")).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []
