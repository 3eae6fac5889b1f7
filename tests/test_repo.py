"""Loading definitions from the Python files of a repo."""

from __future__ import annotations

import pytest

from feature_rollout.core.errors import DuplicateObjectError, RepoConfigError
from feature_rollout.core.plan import collect
from feature_rollout.repo import load_definitions, repo_files

ENTITY = "from feature_rollout import Entity\ndriver = Entity(name='driver', join_keys=['driver_id'])\n"


def names(objects):
    return sorted(f"{type(o).__name__}:{o.name}" for o in objects)


def test_files_in_subfolders_are_loaded_and_shared_objects_count_once(tmp_path):
    (tmp_path / "entities.py").write_text(ENTITY)
    (tmp_path / "views").mkdir()
    (tmp_path / "views" / "driver.py").write_text(
        "from entities import driver\n"
        "from feature_rollout import FeatureView, Field, FileSource\n"
        "from feature_rollout.types import Float32\n"
        "src = FileSource(path='data/d.parquet')\n"
        "driver_stats = FeatureView(name='driver_stats', entities=[driver], source=src,\n"
        "                           schema=[Field(name='conv_rate', dtype=Float32)])\n")
    objects = load_definitions(tmp_path)
    assert names(objects) == ["Entity:driver", "Entity:driver", "FeatureView:driver_stats", "FileSource:d"]
    desired = collect(objects)  # two equal copies of one entity are one object
    assert sorted(desired.entities) == ["driver"]


def test_skipped_files(tmp_path):
    for relative in ("a.py", "_private.py", ".hidden/x.py", "data/gen.py", ".venv/lib.py", "__pycache__/c.py",
                     "scratch/tmp.py", "keep/b.py"):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    (tmp_path / ".featurerolloutignore").write_text("# comments are fine\nscratch/\n")
    assert [p.relative_to(tmp_path).as_posix() for p in repo_files(tmp_path)] == ["a.py", "keep/b.py"]


def test_an_import_error_names_the_file_and_line(tmp_path):
    (tmp_path / "broken.py").write_text("x = 1\nraise RuntimeError('boom')\n")
    with pytest.raises(RepoConfigError,
                       match=r"Importing broken.py failed: RuntimeError: boom \(line 2 of broken.py\)\. Fix the"):
        load_definitions(tmp_path)
    (tmp_path / "broken.py").write_text("def f(:\n")
    with pytest.raises(RepoConfigError,
                       match=r"Importing broken.py failed: SyntaxError: .*\(broken.py, line 1\)\. Fix the file"):
        load_definitions(tmp_path)


def test_two_different_objects_with_one_name(tmp_path):
    (tmp_path / "a.py").write_text(ENTITY)
    (tmp_path / "b.py").write_text(ENTITY.replace("['driver_id']", "['driver_uuid']"))
    with pytest.raises(DuplicateObjectError, match="Two different entity definitions are named 'driver': one in a.py, "
                                                   "one in b.py"):
        load_definitions(tmp_path)


def test_edits_are_seen_by_a_second_load_in_the_same_process(tmp_path):
    (tmp_path / "entities.py").write_text(ENTITY)
    (tmp_path / "main.py").write_text("from entities import driver as d\n")
    assert [o.join_keys for o in load_definitions(tmp_path)] == [["driver_id"], ["driver_id"]]
    (tmp_path / "entities.py").write_text(ENTITY.replace("['driver_id']", "['driver_uuid']"))
    assert [o.join_keys for o in load_definitions(tmp_path)] == [["driver_uuid"], ["driver_uuid"]]
