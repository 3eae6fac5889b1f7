"""DESIGN §2 layering: core imports nothing of the package; only the Airflow layer imports Airflow;
importing the package (as a DAG file does) is cheap and does no I/O."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "provider" / "feature_rollout"
AIRFLOW_LAYER = {"hooks", "operators", "sensors", "triggers", "task_groups.py", "plugins"}
STDLIB = set(sys.stdlib_module_names)


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "migrations" not in p.parts)


def test_core_imports_only_the_standard_library_and_core():
    offenders = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in python_files(PACKAGE / "core")
        for name in imports(path)
        if name.split(".")[0] not in STDLIB and not name.startswith("feature_rollout.core")
    }
    assert offenders == set()


def test_only_the_airflow_layer_imports_airflow():
    offenders = {
        str(path.relative_to(PACKAGE))
        for path in python_files(PACKAGE)
        if path.relative_to(PACKAGE).parts[0] not in AIRFLOW_LAYER
        and any(name == "airflow" or name.startswith("airflow.") for name in imports(path))
    }
    assert offenders == set()


def test_importing_the_package_and_the_definitions_is_light():
    code = (
        "import sys\n"
        "import feature_rollout\n"
        "from feature_rollout import Entity, FeatureView, Field, FileSource, FeatureService\n"
        "from feature_rollout.types import Float32\n"
        "heavy = sorted(m for m in ('airflow', 'sqlalchemy', 'pandas', 'pyarrow', 'duckdb', 'alembic', 'yaml')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
