"""Feature-store definitions: ``Entity``, ``Field``, ``FileSource``, ``FeatureView``, ``FeatureService``.

The names and keyword arguments mirror Feast's, so that a Feast repo ports by changing its imports.
Every object validates itself when it is built (names, types, version strings) and turns into a
plain JSON-able *spec* (``to_spec()``) which is what the registry stores and fingerprints.
Cross-object rules (unknown entities, duplicate names) are checked when a set of objects is
planned, in :mod:`feature_rollout.core.plan`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import PurePath
from typing import Any

from feature_rollout.core.errors import EmptySchemaError, InvalidDefinitionError, UnknownReferenceError
from feature_rollout.core.refs import FeatureRef, format_version, parse_feature_ref, parse_version, validate_name
from feature_rollout.core.types import FeatureType, parse_type

Spec = dict[str, Any]

DEFAULT_TIMESTAMP_FIELD = "event_timestamp"


def _tags(tags: Mapping[str, str] | None, owner_what: str) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise InvalidDefinitionError(f"The tags of {owner_what} must be a mapping of strings to strings.")
    return dict(sorted(tags.items()))


def _text(value: object, field: str, owner_what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidDefinitionError(f"The {field} of {owner_what} must be a string, got {value!r}.")
    return value


def _flag(value: object, field: str, owner_what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidDefinitionError(f"{field} of {owner_what} must be True or False, got {value!r}.")
    return value


class _Definition:
    """Common behaviour: equality and hashing by spec, a readable repr."""

    kind: str = ""
    name: str

    def to_spec(self) -> Spec:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_spec() == self.to_spec()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Entity(_Definition):
    """A business object that features describe, identified by one or more join keys.

    :param name: the entity name.
    :param join_keys: the key columns; defaults to ``[name]``.
    :param value_type: the type of a single join key, if it is not declared in the views' schemas.
    :param description: free text.
    :param tags: string labels.
    :param owner: who owns it.
    :param prevent_destroy: protect it from deletion and recreation in live workspaces.
    """

    kind = "entity"

    def __init__(
        self,
        *,
        name: str,
        join_keys: Sequence[str] | None = None,
        value_type: FeatureType | str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        prevent_destroy: bool = False,
    ) -> None:
        self.name = validate_name(name, "entity")
        what = f"entity '{name}'"
        keys = list(join_keys) if join_keys is not None else [name]
        if isinstance(join_keys, str):
            raise InvalidDefinitionError(f"join_keys of {what} must be a list such as ['{join_keys}'], not a string.")
        if not keys:
            raise InvalidDefinitionError(f"{what} needs at least one join key.")
        for key in keys:
            validate_name(key, f"join key of {what}")
        if len(set(keys)) != len(keys):
            raise InvalidDefinitionError(f"{what} lists a join key twice: {keys}.")
        self.join_keys = keys
        self.value_type = parse_type(value_type) if value_type is not None else None
        if self.value_type is not None and len(keys) != 1:
            raise InvalidDefinitionError(
                f"value_type of {what} applies to a single join key; declare the key types in the views' schemas."
            )
        self.description = _text(description, "description", what)
        self.tags = _tags(tags, what)
        self.owner = _text(owner, "owner", what)
        self.prevent_destroy = _flag(prevent_destroy, "prevent_destroy", what)

    @property
    def join_key(self) -> str:
        return self.join_keys[0]

    def to_spec(self) -> Spec:
        return {
            "name": self.name,
            "join_keys": list(self.join_keys),
            "value_type": str(self.value_type) if self.value_type is not None else None,
            "description": self.description,
            "tags": dict(self.tags),
            "owner": self.owner,
            "prevent_destroy": self.prevent_destroy,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Entity:
        return cls(name=spec["name"], join_keys=spec["join_keys"], value_type=spec.get("value_type"),
                   description=spec.get("description", ""), tags=spec.get("tags"), owner=spec.get("owner", ""),
                   prevent_destroy=spec.get("prevent_destroy", False))


class Field:
    """A named, typed column of a feature view's schema.

    :param name: the column name.
    :param dtype: its type, e.g. ``Float32`` (from :mod:`feature_rollout.types`).
    :param description: free text.
    :param tags: string labels.
    """

    def __init__(self, *, name: str, dtype: FeatureType | str, description: str = "",
                 tags: Mapping[str, str] | None = None) -> None:
        self.name = validate_name(name, "field")
        self.dtype = parse_type(dtype)
        self.description = _text(description, "description", f"field '{name}'")
        self.tags = _tags(tags, f"field '{name}'")

    def to_spec(self) -> Spec:
        return {"name": self.name, "dtype": str(self.dtype), "description": self.description, "tags": dict(self.tags)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Field:
        return cls(name=spec["name"], dtype=spec["dtype"], description=spec.get("description", ""),
                   tags=spec.get("tags"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Field) and other.to_spec() == self.to_spec()

    def __hash__(self) -> int:
        return hash((self.name, str(self.dtype)))

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, dtype={self.dtype})"


_STEM_CLEAN = re.compile(r"[^A-Za-z0-9_]")


class FileSource(_Definition):
    """Parquet data: a local path, a glob, or a pyarrow-supported URI (``s3://``, ``gs://``).

    :param path: where the Parquet data is; relative paths are relative to the feature repo.
    :param name: the source name; when omitted it is derived from the file name
        (``data/driver_stats.parquet`` gives ``driver_stats``).
    :param timestamp_field: the event-time column (default ``event_timestamp``).
    :param created_timestamp_column: the column that breaks ties between rows of equal event time.
    :param field_mapping: renames source columns to feature names, ``{"source_col": "feature"}``.
    :param description: free text.
    :param tags: string labels.
    :param owner: who owns it.
    :param prevent_destroy: protect it from deletion and recreation in live workspaces.
    """

    kind = "data_source"

    def __init__(
        self,
        *,
        path: str,
        name: str | None = None,
        timestamp_field: str | None = None,
        created_timestamp_column: str | None = None,
        field_mapping: Mapping[str, str] | None = None,
        file_format: str = "parquet",
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        prevent_destroy: bool = False,
        event_timestamp_column: str | None = None,
    ) -> None:
        if not isinstance(path, str) or not path.strip():
            raise InvalidDefinitionError(f"FileSource needs a non-empty path, got {path!r}.")
        self.path = path
        self.name = validate_name(name if name else _name_from_path(path), "data source")
        what = f"data source '{self.name}'"
        self.timestamp_field = validate_name(
            timestamp_field or event_timestamp_column or DEFAULT_TIMESTAMP_FIELD, f"timestamp_field of {what}"
        )
        self.created_timestamp_column = (
            validate_name(created_timestamp_column, f"created_timestamp_column of {what}")
            if created_timestamp_column else ""
        )
        mapping = dict(field_mapping or {})
        for column, feature in mapping.items():
            if not isinstance(column, str) or not column:
                raise InvalidDefinitionError(f"field_mapping of {what} has a bad source column {column!r}.")
            validate_name(feature, f"field_mapping target of {what}")
        self.field_mapping = dict(sorted(mapping.items()))
        if file_format != "parquet":
            raise InvalidDefinitionError(f"{what} uses file_format={file_format!r}; only 'parquet' is supported.")
        self.file_format = file_format
        self.description = _text(description, "description", what)
        self.tags = _tags(tags, what)
        self.owner = _text(owner, "owner", what)
        self.prevent_destroy = _flag(prevent_destroy, "prevent_destroy", what)

    def to_spec(self) -> Spec:
        return {
            "name": self.name,
            "type": "file",
            "path": self.path,
            "file_format": self.file_format,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_column": self.created_timestamp_column,
            "field_mapping": dict(self.field_mapping),
            "description": self.description,
            "tags": dict(self.tags),
            "owner": self.owner,
            "prevent_destroy": self.prevent_destroy,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FileSource:
        return cls(path=spec["path"], name=spec["name"], timestamp_field=spec.get("timestamp_field"),
                   created_timestamp_column=spec.get("created_timestamp_column") or None,
                   field_mapping=spec.get("field_mapping"), file_format=spec.get("file_format", "parquet"),
                   description=spec.get("description", ""), tags=spec.get("tags"), owner=spec.get("owner", ""),
                   prevent_destroy=spec.get("prevent_destroy", False))


def _name_from_path(path: str) -> str:
    stem = PurePath(path.rstrip("/")).name.split(".")[0]
    candidate = _STEM_CLEAN.sub("_", stem)
    if not candidate or not candidate[0].isalpha():
        raise InvalidDefinitionError(
            f"Cannot derive a data source name from path {path!r}; pass name= to FileSource."
        )
    return candidate[:63]


class FeatureView(_Definition):
    """A group of features of some entities, read from one source, served from the online store.

    :param name: the view name.
    :param source: where its rows come from.
    :param schema: its fields; fields named like a join key declare that key's type, the rest are features.
    :param entities: the entities (objects or names) whose keys identify a row.
    :param ttl: how far back from a timestamp a row still counts; ``None`` or zero means forever.
    :param online: whether the view is materialized to the online store.
    :param description: free text.
    :param tags: string labels.
    :param owner: who owns it.
    :param version: ``"latest"`` (default) to version automatically, or ``"vN"``/``"versionN"`` to pin.
    :param prevent_destroy: protect it (and its source and entities) in live workspaces.
    """

    kind = "feature_view"

    def __init__(
        self,
        *,
        name: str,
        source: FileSource,
        schema: Sequence[Field] | None = None,
        entities: Sequence[Entity | str] | None = None,
        ttl: timedelta | None = None,
        online: bool = True,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        version: str = "latest",
        prevent_destroy: bool = False,
    ) -> None:
        self.name = validate_name(name, "feature view")
        what = f"feature view '{name}'"
        if not isinstance(source, FileSource):
            raise InvalidDefinitionError(f"{what} needs source=FileSource(...), got {source!r}.")
        self.source = source
        self.entities: list[Entity | str] = []
        for entity in entities or []:
            if isinstance(entity, Entity):
                self.entities.append(entity)
            elif isinstance(entity, str):
                self.entities.append(validate_name(entity, f"entity of {what}"))
            else:
                raise InvalidDefinitionError(f"entities of {what} must be Entity objects or names, got {entity!r}.")
        entity_names = [e.name if isinstance(e, Entity) else e for e in self.entities]
        if len(set(entity_names)) != len(entity_names):
            raise InvalidDefinitionError(f"{what} lists an entity twice: {entity_names}.")
        fields = list(schema or [])
        for field in fields:
            if not isinstance(field, Field):
                raise InvalidDefinitionError(f"schema of {what} must be a list of Field(...), got {field!r}.")
        names = [f.name for f in fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidDefinitionError(f"{what} declares field(s) {', '.join(duplicates)} more than once.")
        declared_keys = {key for e in self.entities if isinstance(e, Entity) for key in e.join_keys}
        self.schema = fields
        self.features = [f for f in fields if f.name not in declared_keys]
        if not self.features:
            raise EmptySchemaError(
                f"{what} has no features: its schema must list at least one Field that is not a join key."
            )
        reserved = {source.timestamp_field, source.created_timestamp_column} - {""}
        clashing = sorted(reserved & {f.name for f in self.features})
        if clashing:
            raise InvalidDefinitionError(
                f"{what} declares {', '.join(clashing)} as a feature, but that column is the source's timestamp."
            )
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl < timedelta(0)):
            raise InvalidDefinitionError(f"ttl of {what} must be a non-negative timedelta or None, got {ttl!r}.")
        self.ttl = ttl if ttl else None
        self.online = _flag(online, "online", what)
        self.description = _text(description, "description", what)
        self.tags = _tags(tags, what)
        self.owner = _text(owner, "owner", what)
        self.version_number = parse_version(version, what=f"version of {what}")
        self.version = format_version(self.version_number)
        self.prevent_destroy = _flag(prevent_destroy, "prevent_destroy", what)
        #: Set on objects read back from the registry: the version number this object is a snapshot of.
        self.current_version_number: int | None = None

    @property
    def entity_names(self) -> list[str]:
        return [e.name if isinstance(e, Entity) else e for e in self.entities]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def __getitem__(self, features: Sequence[str]) -> FeatureViewProjection:
        """``driver_stats[["conv_rate", "trips_today"]]``: a projection for a feature service."""
        if isinstance(features, str):
            features = [features]
        return FeatureViewProjection(self, list(features))

    def to_spec(self) -> Spec:
        """The view as JSON-able data; ``entity_columns`` holds key types declared in the schema."""
        entity_keys = {key for e in self.entities if isinstance(e, Entity) for key in e.join_keys}
        return {
            "name": self.name,
            "entities": self.entity_names,
            "entity_columns": [f.to_spec() for f in self.schema if f.name in entity_keys],
            "features": [f.to_spec() for f in self.features],
            "source": self.source.name,
            "ttl_seconds": _seconds(self.ttl),
            "online": self.online,
            "description": self.description,
            "tags": dict(self.tags),
            "owner": self.owner,
            "version": self.version,
            "prevent_destroy": self.prevent_destroy,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], source: FileSource, entities: Sequence[Entity | str]) -> FeatureView:
        fields = [Field.from_spec(f) for f in [*spec.get("entity_columns", []), *spec["features"]]]
        ttl = spec.get("ttl_seconds")
        view = cls(name=spec["name"], source=source, schema=fields, entities=entities,
                   ttl=timedelta(seconds=ttl) if ttl else None, online=spec.get("online", True),
                   description=spec.get("description", ""), tags=spec.get("tags"), owner=spec.get("owner", ""),
                   version=spec.get("version", "latest"), prevent_destroy=spec.get("prevent_destroy", False))
        return view


def _seconds(ttl: timedelta | None) -> int | float | None:
    if not ttl:
        return None
    seconds = ttl.total_seconds()
    return int(seconds) if seconds.is_integer() else seconds


class FeatureViewProjection:
    """A subset of one view's features, optionally pinned to a version, inside a feature service."""

    def __init__(self, view: FeatureView | str, features: Sequence[str] | None, version: int | None = None) -> None:
        self.view_name = view.name if isinstance(view, FeatureView) else validate_name(view, "feature view")
        self.view = view if isinstance(view, FeatureView) else None
        self.version = version
        if features is not None:
            features = list(features)
            if not features:
                raise InvalidDefinitionError(f"A projection of '{self.view_name}' must name at least one feature.")
            for feature in features:
                validate_name(feature, f"feature of '{self.view_name}'")
            if self.view is not None and version is None:
                unknown = [f for f in features if f not in self.view.feature_names]
                if unknown:
                    raise UnknownReferenceError(
                        f"Feature view '{self.view_name}' has no feature(s) {', '.join(unknown)}; "
                        f"it has {', '.join(self.view.feature_names)}."
                    )
        self.features = features

    def to_spec(self) -> Spec:
        return {"view": self.view_name, "version": self.version, "features": self.features}

    def __repr__(self) -> str:
        return f"FeatureViewProjection({self.view_name!r}, {self.features!r}, version={self.version!r})"


FeatureServiceItem = FeatureView | FeatureViewProjection | str


class FeatureService(_Definition):
    """A named set of features that a model reads together.

    :param name: the service name.
    :param features: views (all their features, active version), projections ``fv[["a", "b"]]``, and
        pinned references ``"fv@v1:feature"``.
    :param description: free text.
    :param tags: string labels.
    :param owner: who owns it.
    :param prevent_destroy: protect it, and by cascade its views, their sources and entities.
    """

    kind = "feature_service"

    def __init__(
        self,
        *,
        name: str,
        features: Sequence[FeatureServiceItem],
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        prevent_destroy: bool = False,
    ) -> None:
        self.name = validate_name(name, "feature service")
        what = f"feature service '{name}'"
        if isinstance(features, str | FeatureView) or not isinstance(features, Iterable):
            raise InvalidDefinitionError(f"features of {what} must be a list.")
        if not features:
            raise EmptySchemaError(f"{what} has no features; list at least one feature view or reference.")
        self.projections = _merge_projections([_projection(item, what) for item in features], what)
        self.description = _text(description, "description", what)
        self.tags = _tags(tags, what)
        self.owner = _text(owner, "owner", what)
        self.prevent_destroy = _flag(prevent_destroy, "prevent_destroy", what)

    @property
    def feature_views(self) -> list[FeatureView]:
        return [p.view for p in self.projections if p.view is not None]

    def to_spec(self) -> Spec:
        return {
            "name": self.name,
            "features": [p.to_spec() for p in self.projections],
            "description": self.description,
            "tags": dict(self.tags),
            "owner": self.owner,
            "prevent_destroy": self.prevent_destroy,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureService:
        projections = [FeatureViewProjection(p["view"], p["features"], p.get("version")) for p in spec["features"]]
        return cls(name=spec["name"], features=projections, description=spec.get("description", ""),
                   tags=spec.get("tags"), owner=spec.get("owner", ""),
                   prevent_destroy=spec.get("prevent_destroy", False))


def _projection(item: object, what: str) -> FeatureViewProjection:
    if isinstance(item, FeatureViewProjection):
        return item
    if isinstance(item, FeatureView):
        return FeatureViewProjection(item, None)
    if isinstance(item, str):
        ref: FeatureRef = parse_feature_ref(item)
        return FeatureViewProjection(ref.view, [ref.feature], ref.version)
    raise InvalidDefinitionError(
        f"features of {what} may hold feature views, projections such as fv[['a']], or references such as "
        f"'fv@v1:a'; got {item!r}."
    )


def _merge_projections(items: list[FeatureViewProjection], what: str) -> list[FeatureViewProjection]:
    """Merge references to the same (view, version) so that ``"fv@v1:a", "fv@v1:b"`` is one projection."""
    merged: dict[tuple[str, int | None], FeatureViewProjection] = {}
    for item in items:
        key = (item.view_name, item.version)
        if key not in merged:
            merged[key] = item
            continue
        existing = merged[key]
        view = existing.view or item.view
        if view is not None and key[1] is None:
            # The whole view is listed too: a reference next to it must still name a real feature.
            FeatureViewProjection(view, existing.features or item.features)
        if existing.features is None or item.features is None:
            features = None
        else:
            features = existing.features + [f for f in item.features if f not in existing.features]
        merged[key] = FeatureViewProjection(view if view is not None else item.view_name, features, item.version)
    return list(merged.values())


Definition = Entity | FileSource | FeatureView | FeatureService
