"""Loading definitions from a feature repo: every ``*.py`` file under the repo is imported and its
module-level ``Entity``/``FileSource``/``FeatureView``/``FeatureService`` objects are collected.

Skipped: hidden and ``_``-prefixed names, ``__pycache__``, virtualenvs, ``data/``, and anything
matched by a glob pattern in ``.featurerolloutignore`` (one per line, relative to the repo).
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

from feature_rollout.core.definitions import Definition, Entity, FeatureService, FeatureView, FileSource
from feature_rollout.core.errors import DuplicateObjectError, FeatureRolloutError, RepoConfigError

IGNORE_FILE = ".featurerolloutignore"
_SKIP_DIRS = {"__pycache__", "data", "venv", ".venv", "env", "node_modules", "site-packages", "build", "dist"}
_DEFINITION_TYPES = (Entity, FileSource, FeatureView, FeatureService)


def repo_files(root: Path) -> Iterator[Path]:
    """The Python files that make up the repo, in a stable order."""
    patterns = []
    ignore = root / IGNORE_FILE
    if ignore.is_file():
        patterns = [p.strip() for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")]
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        parts = relative.parts
        if any(p.startswith((".", "_")) or p in _SKIP_DIRS for p in parts[:-1]):
            continue
        if parts[-1].startswith((".", "_")):
            continue
        text = relative.as_posix()
        if any(fnmatch(text, pattern) or fnmatch(parts[0], pattern.rstrip("/")) for pattern in patterns):
            continue
        yield path


def load_definitions(repo_path: Path) -> list[Definition]:
    """Import the repo's files and return their definitions (each object once, in file order)."""
    root = repo_path.resolve()
    found: dict[int, Definition] = {}
    origins: dict[tuple[str, str], tuple[Definition, Path]] = {}
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        for index, path in enumerate(repo_files(root)):
            module_name = f"_feature_rollout_repo_{index}_{path.stem}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or spec.loader is None:
                raise RepoConfigError(f"Cannot import {path}.")
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except FeatureRolloutError as err:
                raise _with_location(err, path) from None
            except Exception as err:  # a user's file may raise anything: report it, not a traceback
                raise RepoConfigError(
                    f"Importing {path.relative_to(root)} failed: {type(err).__name__}: {err}{_where(err, root)}. "
                    "Fix the file and run the command again."
                ) from None
            for value in vars(module).values():
                if isinstance(value, _DEFINITION_TYPES):
                    found.setdefault(id(value), value)
                    _check_duplicate(origins, value, path.relative_to(root))
    finally:
        sys.path.remove(str(root))
        # Forget repo modules imported by name (``from entities import driver``), so that a later load
        # in this process reads the files again instead of a cached copy.
        for name in set(sys.modules) - before:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file.startswith(str(root)):
                del sys.modules[name]
    return list(found.values())


def _where(err: Exception, root: Path) -> str:
    """`` (line N of file)`` for the innermost frame inside the repo (a SyntaxError names its own)."""
    if isinstance(err, SyntaxError):
        return ""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith(str(root))]
    if not frames:
        return ""
    return f" (line {frames[-1].lineno} of {Path(frames[-1].filename).relative_to(root)})"


def _check_duplicate(origins: dict[tuple[str, str], tuple[Definition, Path]], value: Definition, path: Path) -> None:
    key = (value.kind, value.name)
    seen = origins.setdefault(key, (value, path))
    if seen[0] is not value and seen[0].to_spec() != value.to_spec():
        raise DuplicateObjectError(
            f"Two different {value.kind.replace('_', ' ')} definitions are named '{value.name}': one in {seen[1]}, "
            f"one in {path}. Rename one, or define it once and import it."
        )


def _with_location(err: FeatureRolloutError, path: Path) -> FeatureRolloutError:
    err.args = (f"{path.name}: {err}",)
    return err
