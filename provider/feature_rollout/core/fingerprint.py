"""Canonical form of a definition and its fingerprints.

Every object has two fingerprints, after SQLMesh's snapshots:

- ``schema_hash``: what changes the data. For a feature view: feature names and types, entities and
  their join keys, and the source's location and columns. A new ``schema_hash`` means a new version.
- ``metadata_hash``: what does not change the data (description, tags, owner, ttl, online,
  prevent_destroy, field docs). A new ``metadata_hash`` alone is an in-place update.

A third, ``served_hash``, is what readers of the online store see: feature names and types plus the
join keys. Protection (§8) and ``suppress_recreates`` (§7) use it to tell a change of *where data
comes from* from a change of *what is served*. Field order is not significant: fields are sorted
before hashing, so reordering a schema is not a new version.

Plan and apply use these functions and nothing else to detect change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Spec = Mapping[str, Any]


def canonical_json(value: Any) -> str:
    """Stable JSON: sorted keys, no whitespace, UTF-8 kept. Equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    schema_hash: str
    metadata_hash: str
    served_hash: str


def _sorted_fields(fields: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return sorted((f["name"], f["dtype"]) for f in fields)


def _field_docs(fields: list[Mapping[str, Any]]) -> list[tuple[str, str, Any]]:
    return sorted((f["name"], f.get("description", ""), f.get("tags", {})) for f in fields)


def _common_metadata(spec: Spec) -> dict[str, Any]:
    return {k: spec.get(k) for k in ("description", "tags", "owner", "prevent_destroy")}


def entity_fingerprint(spec: Spec) -> Fingerprint:
    identity = {"join_keys": list(spec["join_keys"]), "value_type": spec.get("value_type")}
    h = digest(identity)
    return Fingerprint(schema_hash=h, metadata_hash=digest(_common_metadata(spec)), served_hash=h)


SOURCE_LOCATION_KEYS = ("type", "path", "file_format")
SOURCE_COLUMN_KEYS = ("timestamp_field", "created_timestamp_column", "field_mapping")


def source_identity(spec: Spec) -> dict[str, Any]:
    """The parts of a source that change the data read from it (not its name or description)."""
    return {k: spec.get(k) for k in (*SOURCE_LOCATION_KEYS, *SOURCE_COLUMN_KEYS)}


def source_fingerprint(spec: Spec) -> Fingerprint:
    return Fingerprint(
        schema_hash=digest(source_identity(spec)),
        metadata_hash=digest(_common_metadata(spec)),
        # Moving the data (path, format) keeps the columns: that is what suppress_recreates may absorb.
        served_hash=digest({k: spec.get(k) for k in SOURCE_COLUMN_KEYS}),
    )


def served_schema(spec: Spec) -> dict[str, Any]:
    """What online readers of a resolved feature view see: join keys and features, with types."""
    return {
        "join_keys": [(k["name"], k.get("dtype")) for k in spec["join_keys"]],
        "features": _sorted_fields(spec["features"]),
    }


def view_fingerprint(spec: Spec) -> Fingerprint:
    """Fingerprint of a *resolved* feature view spec (see :func:`feature_rollout.core.plan.resolve_view`)."""
    served = served_schema(spec)
    schema = {
        **served,
        "entities": list(spec["entities"]),
        "source": source_identity(spec["source_spec"]),
    }
    metadata = {
        **_common_metadata(spec),
        "ttl_seconds": spec.get("ttl_seconds"),
        "online": spec.get("online", True),
        "fields": _field_docs(spec["features"]),
    }
    return Fingerprint(schema_hash=digest(schema), metadata_hash=digest(metadata), served_hash=digest(served))


def service_fingerprint(spec: Spec) -> Fingerprint:
    def order(p: Mapping[str, Any]) -> tuple[str, int]:
        return p["view"], -1 if p.get("version") is None else p["version"]

    identity = [
        {"view": p["view"], "version": p.get("version"),
         "features": sorted(p["features"]) if p.get("features") is not None else None}
        for p in sorted(spec["features"], key=order)
    ]
    h = digest(identity)
    return Fingerprint(schema_hash=h, metadata_hash=digest(_common_metadata(spec)), served_hash=h)


VIEW_METADATA_KEYS = ("description", "tags", "owner", "ttl_seconds", "online", "prevent_destroy")


def view_metadata(spec: Spec, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The in-place (unversioned) part of a view, kept on the view row rather than in version snapshots.

    Field docs are kept per field and only where set, merged over ``previous``: staging a version
    with more fields must not make the active definition's docs look changed.
    """
    docs: dict[str, Any] = dict((previous or {}).get("fields", {}))
    for f in spec["features"]:
        doc = {"description": f.get("description", ""), "tags": f.get("tags", {})}
        if doc["description"] or doc["tags"]:
            docs[f["name"]] = doc
        else:
            docs.pop(f["name"], None)
    return {**{k: spec.get(k) for k in VIEW_METADATA_KEYS}, "fields": dict(sorted(docs.items()))}
