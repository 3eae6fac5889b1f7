#!/usr/bin/env bash
# The command-line rollout on a generated demo repo:
# init -> plan -> apply -> a schema edit -> apply --no-promote -> list-versions
# -> materialize v0 and the staged v1 -> parity v1 vs v0 -> gated promote -> status.
set -euo pipefail
DEMO_DIR="${DEMO_DIR:-build/demo}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$DEMO_DIR"
step "feature-rollout init $DEMO_DIR"
feature-rollout init "$DEMO_DIR" --project demo
cd "$DEMO_DIR"

step "feature-rollout plan"
feature-rollout plan --json-out plan.json
PLAN_ID=$(python -c "import json; print(json.load(open('plan.json'))['id'])")

step "feature-rollout apply --plan-id $PLAN_ID"
feature-rollout apply --plan-id "$PLAN_ID"

step "Schema edit: add the feature avg_daily_trips to driver_stats"
python - <<'PY'
from pathlib import Path
path = Path("features.py")
text = path.read_text()
old = '        Field(name="trips_today", dtype=Int64),\n'
assert old in text, "the demo definitions changed; update scripts/demo.sh"
path.write_text(text.replace(old, old + '        Field(name="avg_daily_trips", dtype=Int64),\n'))
PY
grep -n "avg_daily_trips" features.py

step "feature-rollout apply --no-promote   (stage v1; v0 keeps serving)"
feature-rollout apply --no-promote

step "feature-rollout feature-views list-versions driver_stats"
feature-rollout feature-views list-versions driver_stats

END=$(python -c 'import datetime as d; print(d.datetime.now(d.UTC).replace(microsecond=0).isoformat())')
HALF_DAY_AGO=$(python -c "import datetime as d; print((d.datetime.fromisoformat('$END') - d.timedelta(hours=12)).isoformat())")

step "feature-rollout materialize-incremental $END --include-staged   (v0 and the staged v1, one ttl back)"
feature-rollout materialize-incremental "$END" --include-staged

step "feature-rollout readiness driver_stats v1 $HALF_DAY_AGO $END"
feature-rollout readiness driver_stats v1 "$HALF_DAY_AGO" "$END"

step "feature-rollout parity driver_stats@v0 driver_stats@v1   (the parity report)"
feature-rollout parity driver_stats@v0 driver_stats@v1 --sample-size 200 --seed 42

step "feature-rollout promote driver_stats v1   (gated: readiness and parity)"
feature-rollout promote driver_stats v1 --reason "demo rollout"

step "Version history"
feature-rollout feature-views list-versions driver_stats
feature-rollout feature-views history driver_stats

step "feature-rollout status driver_stats   (coverage, online rows, runs, parity)"
feature-rollout status driver_stats

step "A plain apply now changes nothing"
feature-rollout plan
