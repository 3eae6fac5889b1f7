"""DESIGN §10 and §11: readiness, parity reports, and promotion held by both."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feature_rollout.core.errors import GateCheckFailed, InvalidDefinitionError
from feature_rollout.store import FeatureStore
from tests.conftest import DEMO_END, dump_registry

START = DEMO_END - timedelta(days=3)
AT = DEMO_END - timedelta(hours=12)
CHANGED = (1001, 1002, 1003, 1004, 1005)


def spine(at=AT, drivers=range(1001, 1021)) -> pd.DataFrame:
    return pd.DataFrame({"driver_id": list(drivers), "event_timestamp": [at] * len(drivers)})


def stage_moved_source(store: FeatureStore, repo: Path, delta: float) -> None:
    """v1 = the same schema read from a copy of the data where five drivers' conv_rate moved by ``delta``."""
    table = pq.read_table(repo / "data" / "driver_stats.parquet")
    changed = pc.is_in(table.column("driver_id"), pa.array(CHANGED))
    conv = pc.if_else(changed, pc.add(table.column("conv_rate"), pa.scalar(delta, pa.float32())),
                      table.column("conv_rate"))
    pq.write_table(table.set_column(table.schema.get_field_index("conv_rate"), "conv_rate", conv),
                   repo / "data" / "driver_stats_v2.parquet")
    path = repo / "features.py"
    path.write_text(path.read_text().replace('path="data/driver_stats.parquet"', 'path="data/driver_stats_v2.parquet"'))
    store.apply(no_promote=True)


def test_identical_versions_pass(demo_store, demo_repo):
    stage_moved_source(demo_store, demo_repo, 0.0)
    report = demo_store.parity("driver_stats@v0", "driver_stats@v1", spine())
    assert report.passed and report.rows_compared == 20 and report.mismatched_rows == 0
    assert report.mismatches == {"conv_rate": 0, "acc_rate": 0, "trips_today": 0}
    assert (report.baseline, report.candidate) == ("demo/driver_stats@v0", "demo/driver_stats@v1")
    [stored] = demo_store.parity_reports("driver_stats")
    assert stored.id == report.id and stored.passed and stored.spine_digest == report.spine_digest


def test_a_changed_source_fails_with_the_right_counts(demo_store, demo_repo):
    stage_moved_source(demo_store, demo_repo, 0.5)
    report = demo_store.parity("driver_stats@v0", "driver_stats@v1", spine())
    assert not report.passed
    assert report.mismatches == {"conv_rate": 5, "acc_rate": 0, "trips_today": 0}
    assert report.mismatched_rows == 5 and report.mismatch_ratio == 0.25
    assert sorted(e["keys"]["driver_id"] for e in report.examples) == list(CHANGED)
    example = report.examples[0]
    assert example["candidate"] == pytest.approx(example["baseline"] + 0.5, abs=1e-6)
    assert "Parity FAILED" in report.render() and "conv_rate: 5 mismatches" in report.render()


def test_tolerances_and_the_allowed_ratio(demo_store, demo_repo):
    stage_moved_source(demo_store, demo_repo, 0.5)
    assert demo_store.parity("driver_stats@v0", "driver_stats@v1", spine(), abs_tol=0.5001).passed
    assert not demo_store.parity("driver_stats@v0", "driver_stats@v1", spine(), abs_tol=0.49).passed
    assert demo_store.parity("driver_stats@v0", "driver_stats@v1", spine(), max_mismatch_ratio=0.25).passed
    assert not demo_store.parity("driver_stats@v0", "driver_stats@v1", spine(), max_mismatch_ratio=0.2).passed
    only_trips = demo_store.parity("driver_stats@v0", "driver_stats@v1", spine(), columns=["trips_today"])
    assert only_trips.passed and only_trips.mismatches == {"trips_today": 0}


def test_nulls_equal_only_nulls(demo_store, demo_repo):
    stage_moved_source(demo_store, demo_repo, 0.0)
    before_data = spine(at=START - timedelta(days=5))  # no data yet: every feature null on both sides
    assert demo_store.parity("driver_stats@v0", "driver_stats@v1", before_data).passed


def test_a_seeded_sample_spine_is_deterministic(demo_store, demo_repo):
    stage_moved_source(demo_store, demo_repo, 0.0)
    first = demo_store.parity("driver_stats@v0", "driver_stats@v1", sample_size=50, seed=7)
    second = demo_store.parity("driver_stats@v0", "driver_stats@v1", sample_size=50, seed=7)
    other = demo_store.parity("driver_stats@v0", "driver_stats@v1", sample_size=50, seed=8)
    assert first.rows_compared == 50 and first.spine["kind"] == "sample"
    assert first.spine_digest == second.spine_digest != other.spine_digest
    # Every spine is stored: a later check can reuse exactly the same rows, whatever the source became.
    stored = demo_store.parity_spine(first.spine_digest)
    assert stored.num_rows == 50
    again = demo_store.parity("driver_stats@v0", "driver_stats@v1", f"sha256:{first.spine_digest}")
    assert again.spine_digest == first.spine_digest and again.spine["kind"] == "stored"
    from feature_rollout.core.errors import ObjectNotFound

    with pytest.raises(ObjectNotFound, match="No stored parity spine"):
        demo_store.parity("driver_stats@v0", "driver_stats@v1", "sha256:" + "0" * 64)


def test_parity_across_workspaces(demo_store, demo_repo):
    demo_store.create_workspace("staging")
    staging = FeatureStore(demo_repo, workspace="staging", config=demo_store.config)
    staging.apply()
    report = demo_store.parity("demo/driver_stats", "staging/driver_stats", spine())
    assert report.passed and report.candidate == "staging/driver_stats@v0"
    assert [r.id for r in staging.parity_reports("driver_stats")] == [report.id]


def test_bad_parity_inputs(demo_store, demo_repo):
    stage_moved_source(demo_store, demo_repo, 0.0)
    before = dump_registry(demo_store.config.registry_url)
    with pytest.raises(InvalidDefinitionError, match="The candidate has no feature 'nope'"):
        demo_store.parity("driver_stats@v0", "driver_stats@v1", spine(), columns={"conv_rate": "nope"})
    with pytest.raises(InvalidDefinitionError, match="max_mismatch_ratio between 0 and 1"):
        demo_store.parity("driver_stats@v0", "driver_stats@v1", spine(), max_mismatch_ratio=2)
    naive = spine(at=AT.replace(tzinfo=None))
    from feature_rollout.core.errors import NaiveTimestampError

    with pytest.raises(NaiveTimestampError):
        demo_store.parity("driver_stats@v0", "driver_stats@v1", naive)
    assert dump_registry(demo_store.config.registry_url) == before


def test_readiness(demo_store):
    not_yet = demo_store.readiness("driver_stats", "v0", START, DEMO_END)
    assert not not_yet.ready and not_yet.expected_entities == 20 and not_yet.found_entities == 0
    assert [(m.start, m.end) for m in not_yet.missing_intervals] == [(START, DEMO_END)]
    demo_store.materialize(START, DEMO_END - timedelta(days=1))
    partly = demo_store.readiness("driver_stats", "v0", START, DEMO_END)
    assert [(m.start, m.end) for m in partly.missing_intervals] == [(DEMO_END - timedelta(days=1), DEMO_END)]
    assert "no succeeded materialization" in partly.explain()
    demo_store.materialize(DEMO_END - timedelta(days=1), DEMO_END)
    ready = demo_store.readiness("driver_stats", "v0", START, DEMO_END)
    assert ready.ready and (ready.expected_entities, ready.found_entities) == (20, 20)


def test_promotion_is_held_until_populated_and_on_par(demo_store, demo_repo):
    demo_store.materialize(START, DEMO_END)
    stage_moved_source(demo_store, demo_repo, 0.5)
    with pytest.raises(GateCheckFailed, match="v1 is not ready: the ledger has no succeeded materialization"):
        demo_store.promote("driver_stats", "v1")
    demo_store.materialize(START, DEMO_END, ["driver_stats"], version="v1")
    with pytest.raises(GateCheckFailed, match="there is no parity report for driver_stats v1"):
        demo_store.promote("driver_stats", "v1")
    demo_store.parity("driver_stats@v0", "driver_stats@v1", spine())
    before = dump_registry(demo_store.config.registry_url)
    with pytest.raises(GateCheckFailed, match=r"parity report of driver_stats v1 \(#\d+\) FAILED: 5 of 20 rows differ"):
        demo_store.promote("driver_stats", "v1")
    assert dump_registry(demo_store.config.registry_url) == before
    demo_store.parity("driver_stats@v0", "driver_stats@v1", spine(), abs_tol=0.6)
    move = demo_store.promote("driver_stats", "v1", reason="gated")
    assert (move.from_version, move.to_version) == (0, 1)


def test_a_report_against_an_older_active_version_does_not_count(demo_store, demo_repo):
    demo_store.materialize(START, DEMO_END)
    stage_moved_source(demo_store, demo_repo, 0.0)
    demo_store.materialize(START, DEMO_END, ["driver_stats"], version="v1")
    demo_store.parity("driver_stats@v1", "driver_stats@v1", spine())  # not against the active v0
    with pytest.raises(GateCheckFailed, match="compares it with demo/driver_stats@v1, but the active version is "
                                              "demo/driver_stats@v0"):
        demo_store.promote("driver_stats", "v1")


def test_skew_check(demo_store):
    demo_store.materialize(START, DEMO_END)
    skew = demo_store.check_skew("driver_stats", sample_size=10)
    assert skew["passed"] and skew["keys"] == 10
    assert skew["mismatches"] == {"conv_rate": 0, "acc_rate": 0, "trips_today": 0}


def test_prune_never_drops_active_or_staged(demo_store, demo_repo):
    from tests.conftest import add_feature

    add_feature(demo_repo)
    demo_store.apply()                              # v1 active, v0 retired
    add_feature(demo_repo, 'Field(name="acc_rate2", dtype=Float32)')
    demo_store.apply(no_promote=True)               # v2 staged (the column is not in the data; fine for prune)
    assert demo_store.prune_versions("driver_stats", keep=1) == []
    assert demo_store.prune_versions("driver_stats", keep=0) == [0]
    assert not demo_store.online_store.table_exists("demo_driver_stats")
    assert demo_store.online_store.table_exists("demo_driver_stats_v1")
    assert demo_store.online_store.table_exists("demo_driver_stats_v2")
    assert [v["table_dropped_at"] is not None for v in demo_store.list_feature_view_versions("driver_stats")] == [
        True, False, False]
    from feature_rollout.core.errors import VersionPrunedError

    with pytest.raises(VersionPrunedError, match="dropped by prune"):
        demo_store.get_online_features(["driver_stats@v0:conv_rate"], [{"driver_id": 1001}])
