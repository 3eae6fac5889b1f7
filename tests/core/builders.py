"""Plain-value builders for core tests: definitions like DESIGN §3 and registry states made by hand.

A state is built from definition objects through the same functions the registry uses
(``resolve_view``, the fingerprints, ``view_metadata``), so a hand-made state is what an apply of
those definitions would have stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from feature_rollout.core.definitions import Entity, FeatureService, FeatureView, Field, FileSource
from feature_rollout.core.fingerprint import (
    Fingerprint,
    entity_fingerprint,
    service_fingerprint,
    source_fingerprint,
    view_fingerprint,
    view_metadata,
)
from feature_rollout.core.plan import resolve_view
from feature_rollout.core.refs import online_table_name
from feature_rollout.core.state import Hold, ObjectRecord, VersionRecord, VersionState, ViewRecord, WorkspaceState
from feature_rollout.core.types import Float32, Int64, String

WORKSPACE = "demo"
TYPES = {"conv_rate": Float32, "trips_today": Int64, "acc_rate": Float32, "avg_daily_trips": Int64, "city": String}

DRIVER = Entity(name="driver", join_keys=["driver_id"])
SOURCE = FileSource(name="driver_stats_source", path="data/driver_stats.parquet", created_timestamp_column="created")


def view(features: Sequence[str] = ("conv_rate", "trips_today"), *, name: str = "driver_stats",
         version: str = "latest", source: FileSource = SOURCE, entity: Entity = DRIVER,
         dtypes: dict[str, Any] | None = None, **kwargs: Any) -> FeatureView:
    """The driver_stats view of DESIGN §3 with the given features (join key declared as Int64)."""
    types = {**TYPES, **(dtypes or {})}
    schema = [Field(name=key, dtype=Int64) for key in entity.join_keys]
    schema += [Field(name=f, dtype=types.get(f, Float32)) for f in features]
    kwargs.setdefault("ttl", timedelta(days=1))
    return FeatureView(name=name, entities=[entity], source=source, schema=schema, version=version, **kwargs)


def resolved(fv: FeatureView) -> dict[str, Any]:
    """The resolved spec of ``fv`` with its own source and entity objects."""
    entities = {e.name: e.to_spec() for e in fv.entities if isinstance(e, Entity)}
    return resolve_view(fv.to_spec(), fv.source.to_spec(), entities)


def snapshot(fv: FeatureView, number: int, state: VersionState, workspace: str = WORKSPACE) -> VersionRecord:
    spec = resolved(fv)
    fp = view_fingerprint(spec)
    return VersionRecord(number=number, schema_hash=fp.schema_hash, served_hash=fp.served_hash, state=state,
                         spec=spec, online_table=online_table_name(workspace, fv.name, number))


def history(*snapshots: tuple[FeatureView, VersionState], metadata: FeatureView | None = None,
            hold: Hold | None = None, deleted: bool = False, pinned_schema_hash: str | None = None,
            workspace: str = WORKSPACE) -> ViewRecord:
    """A view row whose versions are ``v0, v1, ...`` in the order given; the active one is the ACTIVE snapshot.

    ``metadata`` is the definition the view row's metadata was last written from (default: the active
    snapshot, else the last one).
    """
    versions = tuple(snapshot(fv, n, state, workspace) for n, (fv, state) in enumerate(snapshots))
    active = [v.number for v in versions if v.state is VersionState.ACTIVE]
    assert len(active) <= 1, "at most one active version"
    meta_view = metadata or next((fv for fv, s in snapshots if s is VersionState.ACTIVE), snapshots[-1][0])
    meta_spec = resolved(meta_view)
    return ViewRecord(name=snapshots[0][0].name, active_version=active[0] if active else None,
                      metadata=view_metadata(meta_spec), metadata_hash=view_fingerprint(meta_spec).metadata_hash,
                      hold=hold, deleted=deleted, versions=versions, pinned_schema_hash=pinned_schema_hash)


def record(obj: Entity | FileSource | FeatureService) -> ObjectRecord:
    spec = obj.to_spec()
    fp: Fingerprint
    if isinstance(obj, Entity):
        fp = entity_fingerprint(spec)
    elif isinstance(obj, FileSource):
        fp = source_fingerprint(spec)
    else:
        fp = service_fingerprint(spec)
    return ObjectRecord(name=obj.name, spec=spec, fingerprint=fp)


def state(*views: ViewRecord, objects: Iterable[Entity | FileSource | FeatureService] = (DRIVER, SOURCE),
          live: bool = True, revision: int = 3, name: str = WORKSPACE) -> WorkspaceState:
    """A workspace holding ``views`` and ``objects`` (by default the driver entity and its source)."""
    objs = list(objects)
    return WorkspaceState(
        name=name, live=live, revision=revision, exists=True,
        entities={o.name: record(o) for o in objs if isinstance(o, Entity)},
        data_sources={o.name: record(o) for o in objs if isinstance(o, FileSource)},
        feature_services={o.name: record(o) for o in objs if isinstance(o, FeatureService)},
        feature_views={v.name: v for v in views},
    )
