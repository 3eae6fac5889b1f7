"""Reading a feature view's Parquet source through pyarrow datasets (DESIGN §9).

A source path is relative to the feature repo, or absolute, or a URI (``s3://``, ``gs://``,
``file://``) that pyarrow's filesystems understand. It may name one file, a directory of Parquet
files, or a glob (``data/*.parquet``, ``data/**/part-*.parquet``).

:class:`ViewSource` checks a resolved view spec against its source once, and then reads it *as the
view*: columns renamed by ``field_mapping``, cast to the declared types, the event time as
``_event_ts`` and the created time as ``_created_ts`` (both ``timestamp[us, UTC]``). Filters on the
event time are pushed down to the raw Parquet column so that row groups outside the interval are
skipped.

Timestamp rule: a timestamp column stored *without* a time zone is read as UTC. Nanosecond
timestamps are truncated to microseconds.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from feature_rollout.arrow_types import CREATED_TS, EVENT_TS, TIMESTAMP, arrow_type
from feature_rollout.core.errors import NaiveTimestampError, SchemaMismatchError, SourceNotFoundError

__all__ = ["TypedColumn", "ViewSource", "check_columns", "open_dataset", "to_micros"]

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_GLOB_CHARS = frozenset("*?[")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


# --- where the files are --------------------------------------------------------------------


def open_dataset(source_spec: Mapping[str, Any], repo_path: Path) -> ds.Dataset:
    """Open the Parquet data that ``source_spec["path"]`` names, without reading it.

    :param source_spec: a data source spec (``FileSource.to_spec()``); only ``path`` is used.
    :param repo_path: the feature repo; relative paths are relative to it.
    :return: a pyarrow dataset over one file, a directory's files, or the files a glob matches.
    :raises SourceNotFoundError: nothing exists at the path, or the directory or glob holds no file.
    """
    written = str(source_spec["path"])
    filesystem, location = _filesystem(written, Path(repo_path))
    if any(char in location for char in _GLOB_CHARS):
        base, files = _glob(filesystem, location)
        if not files:
            raise SourceNotFoundError(
                f"The source path '{written}' matches no file (looked under {_shown(filesystem, base)}). "
                "Check the path and the pattern; relative paths are relative to the feature repo."
            )
        return ds.dataset(files, filesystem=filesystem, format="parquet")
    info = filesystem.get_file_info(location)
    if info.type == pafs.FileType.File:
        return ds.dataset([location], filesystem=filesystem, format="parquet")
    if info.type == pafs.FileType.Directory:
        dataset = ds.dataset(location, filesystem=filesystem, format="parquet")
        if not dataset.files:
            raise SourceNotFoundError(
                f"The source directory '{written}' ({_shown(filesystem, location)}) holds no Parquet file. "
                "Write the data there, or point the source at the right directory."
            )
        return dataset
    raise SourceNotFoundError(
        f"The source path '{written}' does not exist (looked for {_shown(filesystem, location)}). "
        "Check the path; relative paths are relative to the feature repo."
    )


def _filesystem(written: str, repo_path: Path) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it (which may still hold glob characters)."""
    if _URI.match(written):
        first_glob = min((written.find(c) for c in _GLOB_CHARS if c in written), default=-1)
        if first_glob < 0:
            filesystem, location = pafs.FileSystem.from_uri(written)
            return filesystem, location
        # from_uri wants a URI without glob characters: resolve the static prefix and re-attach the pattern.
        cut = written.rfind("/", 0, first_glob)
        filesystem, base = pafs.FileSystem.from_uri(written[:cut])
        return filesystem, f"{base.rstrip('/')}/{written[cut + 1:]}"
    path = Path(written).expanduser()
    if not path.is_absolute():
        path = repo_path / path
    return pafs.LocalFileSystem(), Path(os.path.abspath(path)).as_posix()


def _glob(filesystem: pafs.FileSystem, pattern: str) -> tuple[str, list[str]]:
    """The static base directory of ``pattern`` and the files under it that match, sorted."""
    parts = pattern.split("/")
    first = next(i for i, part in enumerate(parts) if any(c in part for c in _GLOB_CHARS))
    base = "/".join(parts[:first]) or "/"
    wanted = parts[first:]
    recursive = len(wanted) > 1 or "**" in wanted
    infos = filesystem.get_file_info(pafs.FileSelector(base, allow_not_found=True, recursive=recursive))
    prefix = base.rstrip("/") + "/"
    files = [
        info.path for info in infos
        if info.type == pafs.FileType.File and _glob_match(wanted, info.path[len(prefix):].split("/"))
    ]
    return base, sorted(files)


def _glob_match(pattern: Sequence[str], parts: Sequence[str]) -> bool:
    """Shell-style matching segment by segment: ``*`` stays within a segment, ``**`` spans any number."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_match(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _glob_match(pattern[1:], parts[1:])


def _shown(filesystem: pafs.FileSystem, location: str) -> str:
    if isinstance(filesystem, pafs.LocalFileSystem):
        return location
    return f"{filesystem.type_name}://{location}"


# --- timestamps -----------------------------------------------------------------------------


def to_micros(value: datetime, what: str) -> int:
    """Microseconds since the epoch of a timezone-aware ``value``.

    :param what: how the caller names the value in the error (``"start"``, ``"end"``).
    :raises NaiveTimestampError: ``value`` has no time zone.
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}.")
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveTimestampError(
            f"{what}={value.isoformat()} has no time zone. Timestamps passed in must be timezone-aware: "
            f"use datetime(..., tzinfo=timezone.utc), pendulum.datetime(...), or value.replace(tzinfo=timezone.utc) "
            "if it is already UTC."
        )
    return (value - _EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    """The UTC datetime ``micros`` microseconds after the epoch."""
    return _EPOCH + timedelta(microseconds=micros)


# --- a view's source, checked ---------------------------------------------------------------


@dataclass(frozen=True)
class TypedColumn:
    """A column of a view as read from its source: its name and Arrow type."""

    name: str
    type: pa.DataType


@dataclass(frozen=True)
class ViewSource:
    """A resolved view spec checked against its source: how to read the source as the view's columns.

    Build it with :meth:`resolve`. Columns read through :meth:`scanner` are the join keys and features
    under their view names and declared types, ``_event_ts`` and (when the source has a created
    column) ``_created_ts``.
    """

    view_name: str
    dataset: ds.Dataset
    keys: tuple[TypedColumn, ...]
    features: tuple[TypedColumn, ...]
    has_created: bool
    expressions: Mapping[str, pc.Expression]
    timestamp_field: str
    timestamp_type: pa.TimestampType

    @classmethod
    def resolve(cls, view_spec: Mapping[str, Any], repo_path: Path) -> ViewSource:
        """Open the source of ``view_spec`` and check its columns.

        :raises SourceNotFoundError: the source path matches no file.
        :raises SchemaMismatchError: a declared column is missing or of an incompatible type, or a
            timestamp column is missing or not a timestamp.
        """
        name = str(view_spec["name"])
        source_spec = view_spec["source_spec"]
        dataset = open_dataset(source_spec, repo_path)
        schema = dataset.schema
        first_file = dataset.files[0] if dataset.files else str(source_spec["path"])
        in_file = f"file {first_file}" if len(dataset.files) <= 1 else (
            f"file {first_file} (the first of {len(dataset.files)} files of '{source_spec['path']}')"
        )
        wanted = [str(c["name"]) for c in (*view_spec["join_keys"], *view_spec["features"])]
        by_view_name = _renamed_columns(schema, source_spec.get("field_mapping") or {}, name, in_file, wanted)
        expressions: dict[str, pc.Expression] = {}

        def typed(spec: Mapping[str, Any], kind: str) -> TypedColumn:
            column = str(spec["name"])
            dtype = spec.get("dtype")
            source_column = by_view_name.get(column)
            if source_column is None:
                shown_type = f" ({dtype})" if dtype else ""
                raise SchemaMismatchError(
                    f"Feature view '{name}' declares {kind} '{column}'{shown_type}, but {in_file} has no such column "
                    f"(it has: {', '.join(schema.names)}). Add the column to the data, fix the name, or map a "
                    f"source column to it with field_mapping={{'<source column>': '{column}'}}."
                )
            found = schema.field(source_column).type
            if not dtype:
                expressions[column] = pc.field(source_column)
                return TypedColumn(column, found)
            declared = arrow_type(dtype)
            if not _compatible(declared, found):
                via = f" (source column '{source_column}')" if source_column != column else ""
                raise SchemaMismatchError(
                    f"Feature view '{name}' declares {kind} '{column}' as {dtype}, but {in_file} has {found}{via}. "
                    f"Change the declared dtype to match the data, or rewrite the column as {declared}."
                )
            expressions[column] = _cast(pc.field(source_column), found, declared)
            return TypedColumn(column, declared)

        keys = tuple(typed(k, "join key") for k in view_spec["join_keys"])
        features = tuple(typed(f, "feature") for f in view_spec["features"])
        timestamp_field = str(source_spec.get("timestamp_field") or "event_timestamp")
        timestamp_type = _timestamp_column(schema, timestamp_field, "timestamp_field", name, in_file)
        expressions[EVENT_TS] = _cast(pc.field(timestamp_field), timestamp_type, TIMESTAMP)
        created = str(source_spec.get("created_timestamp_column") or "")
        if created:
            created_type = _timestamp_column(schema, created, "created_timestamp_column", name, in_file)
            expressions[CREATED_TS] = _cast(pc.field(created), created_type, TIMESTAMP)
        return cls(name, dataset, keys, features, bool(created), expressions, timestamp_field, timestamp_type)

    @property
    def key_names(self) -> list[str]:
        return [c.name for c in self.keys]

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.features]

    def feature(self, name: str) -> TypedColumn:
        return next(c for c in self.features if c.name == name)

    def scanner(self, columns: Sequence[str], *, lower_us: int | None = None, upper_us: int | None = None,
                batch_rows: int = 131_072) -> ds.Scanner:
        """A scanner over ``columns`` (view names, ``_event_ts``, ``_created_ts``) of the rows with
        ``lower_us <= event_ts < upper_us`` (UTC microseconds; ``None`` leaves that side open).

        The bounds are compared with the raw Parquet column, so row groups outside them are pruned.
        """
        projection = {c: self.expressions[c] for c in columns}
        # Pre-buffering reads whole column chunks ahead: it pays on object stores (fewer, larger requests)
        # but on a local disk it only doubles the scan's memory (measured: 450 vs 124 MiB over 1e7 rows).
        local = isinstance(getattr(self.dataset, "filesystem", None), pafs.LocalFileSystem)
        return self.dataset.scanner(columns=projection, filter=self.interval_filter(lower_us, upper_us),
                                    batch_size=batch_rows,
                                    fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=not local))

    def count(self, *, lower_us: int | None = None, upper_us: int | None = None) -> int:
        """Number of source rows with ``lower_us <= event_ts < upper_us``."""
        condition = self.interval_filter(lower_us, upper_us)
        if condition is None:
            return int(self.dataset.count_rows())
        return int(self.dataset.count_rows(filter=condition))

    def interval_filter(self, lower_us: int | None, upper_us: int | None) -> pc.Expression | None:
        """The dataset filter for ``lower_us <= event_ts < upper_us``, on the raw timestamp column."""
        # The view reads floor(raw, 1 µs); with ceil() on the bounds, raw >= ceil(lo) ⟺ floor(raw) >= lo,
        # and raw < ceil(hi) ⟺ floor(raw) < hi, whatever the column's unit.
        column = pc.field(self.timestamp_field)
        conditions = []
        if lower_us is not None:
            conditions.append(column >= self._raw_scalar(lower_us))
        if upper_us is not None:
            conditions.append(column < self._raw_scalar(upper_us))
        if not conditions:
            return None
        return conditions[0] if len(conditions) == 1 else conditions[0] & conditions[1]

    def _raw_scalar(self, micros: int) -> pa.Scalar:
        per_second = _UNITS_PER_SECOND[self.timestamp_type.unit]
        value = micros * per_second // 1_000_000 if per_second >= 1_000_000 else -(-micros * per_second // 1_000_000)
        return pa.scalar(value, pa.int64()).cast(self.timestamp_type)


def check_columns(view_spec: Mapping[str, Any], repo_path: Path) -> None:
    """Check a resolved view spec against its source's schema (reads only the Parquet footer).

    Every declared join key and feature must exist (after ``field_mapping``) with a compatible type:
    the same kind (numbers with numbers, strings with strings, ...); numeric types convert to the
    declared one. ``timestamp_field`` and ``created_timestamp_column`` must be timestamp columns.

    :param view_spec: a resolved view spec (``feature_view_versions.spec_json``).
    :param repo_path: the feature repo.
    :raises SourceNotFoundError: the source path matches no file.
    :raises SchemaMismatchError: naming the column, the declared and the found type, and the file.
    """
    ViewSource.resolve(view_spec, repo_path)


def _renamed_columns(schema: pa.Schema, field_mapping: Mapping[str, str], view: str, in_file: str,
                     wanted: Sequence[str]) -> dict[str, str]:
    """View column name -> source column name, after ``field_mapping``."""
    renamed: dict[str, str] = {}
    for column in schema.names:
        target = field_mapping.get(column, column)
        if target in renamed and target in wanted:
            raise SchemaMismatchError(
                f"Feature view '{view}': {in_file} has two columns that become '{target}' "
                f"('{renamed[target]}' and '{column}', through field_mapping). Map only one of them to '{target}'."
            )
        # A mapped column wins over an unmapped one of the same name.
        if target not in renamed or column in field_mapping:
            renamed[target] = column
    return renamed


def _timestamp_column(schema: pa.Schema, column: str, role: str, view: str, in_file: str) -> pa.TimestampType:
    index = schema.get_field_index(column)
    if index < 0:
        raise SchemaMismatchError(
            f"The source of feature view '{view}' names {role}='{column}', but {in_file} has no such column "
            f"(it has: {', '.join(schema.names)}). Set {role} to the source column that holds it."
        )
    found = schema.field(index).type
    if not pa.types.is_timestamp(found):
        raise SchemaMismatchError(
            f"The {role} '{column}' of feature view '{view}' must be a timestamp column, but {in_file} has {found}. "
            "Write it as a Parquet timestamp (e.g. pandas.to_datetime(..., utc=True)) or point the source at "
            "another column."
        )
    assert isinstance(found, pa.TimestampType)
    return found


def _compatible(declared: pa.DataType, found: pa.DataType) -> bool:
    """Whether a column of type ``found`` can be read as ``declared`` (numbers convert among themselves)."""
    t = pa.types
    if t.is_dictionary(found):
        found = found.value_type
    if t.is_null(found) or found == declared:
        return True
    if t.is_integer(declared) or t.is_floating(declared):
        return bool(t.is_integer(found) or t.is_floating(found) or t.is_decimal(found))
    if t.is_string(declared):
        return bool(t.is_string(found) or t.is_large_string(found) or t.is_string_view(found))
    if t.is_binary(declared):
        return bool(t.is_binary(found) or t.is_large_binary(found) or t.is_binary_view(found)
                    or t.is_fixed_size_binary(found))
    if t.is_boolean(declared):
        return bool(t.is_boolean(found))
    if t.is_timestamp(declared):
        return bool(t.is_timestamp(found))
    lists = (t.is_list(found) or t.is_large_list(found) or t.is_fixed_size_list(found) or t.is_list_view(found))
    if t.is_list(declared) and lists:
        return _compatible(declared.value_type, found.value_type)
    return False


def _cast(expression: pc.Expression, found: pa.DataType, declared: pa.DataType) -> pc.Expression:
    if found == declared:
        return expression
    # Nanoseconds are truncated to microseconds on purpose; every other conversion is checked
    # (an out-of-range or fractional value fails the read rather than being silently changed).
    truncating = _has_nanoseconds(found)
    return expression.cast(declared, safe=not truncating)


def _has_nanoseconds(arrow: pa.DataType) -> bool:
    if pa.types.is_timestamp(arrow):
        return bool(arrow.unit == "ns")
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow) or pa.types.is_fixed_size_list(arrow):
        return _has_nanoseconds(arrow.value_type)
    return False
