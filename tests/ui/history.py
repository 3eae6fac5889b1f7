"""A registry with real history for the UI tests, made by running the real operations (apply, staged
apply, materialize, parity, promote, rollback, release), never by inserting rows by hand.

``build_history`` gives ``driver_stats``: v0 (active; coverage with a gap and a failed chunk), v1
(promoted, rolled back, held, released; fully covered, parity passed), v2 (staged; a changed source
whose parity against v1 failed with mismatches). Descriptions, tags and reasons are hostile HTML.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from tests.conftest import DEMO_END, add_feature

HOSTILE = "<script>alert(1)</script>"
DAG = "feature_rollout_manual"
RUN = "manual__2026-01-08T00:00:00+00:00"
START = DEMO_END - timedelta(days=2)


def run_ref(task: str, dag: str = DAG) -> str:
    """What the operators record: ``{dag_id}/{run_id}/{task_id}``."""
    return f"{dag}/{RUN}/{task}"


@dataclass
class History:
    store: Any
    repo: Path
    view: str = "driver_stats"


def make_hostile(repo: Path) -> None:
    """Hostile HTML in the view's description, a tag and a field description."""
    path = repo / "features.py"
    text = path.read_text()
    text = text.replace('description="Hourly conversion, acceptance and trip counts per driver."',
                        f'description="Hourly stats {HOSTILE}"')
    text = text.replace('tags={"team": "rides"}', f'tags={{"team": "<b>rides</b>", "note": "{HOSTILE}"}}')
    text = text.replace('Field(name="conv_rate", dtype=Float32)',
                        f'Field(name="conv_rate", dtype=Float32, description="{HOSTILE}")')
    path.write_text(text)


def build_history(store: Any, repo: Path, *, extra_versions: int = 0) -> History:
    """Run the operations above on ``store`` (a FeatureStore on the demo repo, nothing applied yet).

    ``extra_versions`` adds that many more staged versions (each a new feature) after v2, for tests
    that compare a view with few versions to one with many.
    """
    store.actor = "airflow:feature_rollout_manual (alice)"
    make_hostile(repo)
    store.apply(run_id=run_ref("rollout.apply"))                                       # v0, active
    store.materialize(START, START + timedelta(hours=12), ["driver_stats"], run_id=run_ref("rollout.materialize"))
    store.materialize(START + timedelta(hours=24), DEMO_END, ["driver_stats"], run_id=run_ref("rollout.materialize"))
    ledger = store.ledger                                                             # a chunk that failed
    from feature_rollout.core.intervals import Interval

    failed = ledger.start_run(store.workspace, "driver_stats", 0, Interval(START + timedelta(hours=12),
                                                                          START + timedelta(hours=18)),
                              run_id=run_ref("rollout.materialize"))
    ledger.fail_run(failed, error=f"OSError: disk full {HOSTILE}", rows_read=10, rows_written=0)

    add_feature(repo)
    store.apply(no_promote=True, run_id=run_ref("rollout.apply"))                      # v1, staged
    store.materialize(START, DEMO_END, ["driver_stats"], version="v1", run_id=run_ref("rollout.materialize"))
    store.parity("driver_stats@v0", "driver_stats@v1", sample_size=40, run_id=run_ref("rollout.parity"))
    store.promote("driver_stats", "v1", require_gates=True, reason="rollout", run_id=run_ref("rollout.promote"))
    store.rollback("driver_stats", reason=f"bad numbers {HOSTILE}",
                   run_id=run_ref("rollback", "feature_rollout_rollback"))
    store.release_hold("driver_stats", reason="fixed")

    # v2: the same schema from a changed file (conv_rate + 0.5): parity against v1 fails.
    data = pq.read_table(repo / "data" / "driver_stats.parquet")
    changed = data.set_column(data.schema.get_field_index("conv_rate"), "conv_rate",
                              pc.add(data["conv_rate"], 0.5).cast(data.schema.field("conv_rate").type))
    pq.write_table(changed, repo / "data" / "driver_stats_v2.parquet")
    features = repo / "features.py"
    features.write_text(features.read_text().replace('"data/driver_stats.parquet"', '"data/driver_stats_v2.parquet"'))
    store.apply(no_promote=True, run_id=run_ref("rollout.apply"))                      # v2, staged
    store.materialize(START, DEMO_END, ["driver_stats"], version="v2", run_id=run_ref("rollout.materialize"))
    store.parity("driver_stats@v1", "driver_stats@v2", sample_size=40, run_id=run_ref("rollout.parity"))
    for index in range(extra_versions):
        add_feature(repo, f'Field(name="extra_{index}", dtype=Int64)')
        store.apply(no_promote=True)
    return History(store, repo)
