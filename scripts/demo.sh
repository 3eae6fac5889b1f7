#!/usr/bin/env bash
# The Airflow rollout on a generated demo repo, with `airflow dags test` on the embedded defaults
# (SQLite registry, SQLite online store, Parquet, SQLite Airflow metadata):
#   1. roll out v0 of a new repo: plan, stage, backfill (mapped), populated, promote;
#   2. add a feature, roll out v1: plan, stage, backfill, populated, parity vs v0, gate, promote;
# then print the plan, the version history, the materialization coverage and the parity report.
set -euo pipefail
DEMO_DIR="${DEMO_DIR:-build/demo}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$(dirname "$DEMO_DIR")"
DEMO_DIR="$(cd "$(dirname "$DEMO_DIR")" && pwd)/$(basename "$DEMO_DIR")"
REPO="$DEMO_DIR/repo"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$DEMO_DIR"
step "feature-rollout init $REPO   (a repo with 7 days of hourly data for 50 drivers)"
feature-rollout init "$REPO" --project demo

export AIRFLOW_HOME="$DEMO_DIR/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=True
export AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT="{\"conn_type\": \"feature_rollout\", \"extra\": {\"repo_path\": \"$REPO\"}}"
step "airflow db migrate   (AIRFLOW_HOME=$AIRFLOW_HOME)"
airflow db migrate > "$DEMO_DIR/airflow-db-migrate.log" 2>&1 && echo "metadata database ready"

END=$(python -c 'import datetime as d; print(d.datetime.now(d.UTC).replace(minute=0, second=0, microsecond=0).isoformat())')
START=$(python -c "import datetime as d; print((d.datetime.fromisoformat('$END') - d.timedelta(days=1)).isoformat())")
CONF="{\"views\": [\"driver_stats\"], \"start\": \"$START\", \"end\": \"$END\", \"chunk_hours\": 6, \"sample_size\": 200}"

rollout() {  # run the manual rollout DAG; show each task's outcome, keep the full log
  local log="$DEMO_DIR/$1.log"
  if ! airflow dags test feature_rollout_manual -c "$CONF" > "$log" 2>&1; then
    echo "airflow dags test failed; see $log" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  grep -oE "\[DAG TEST\] end task task_id=[^ ]+( map_index=[0-9-]+)?" "$log" | sed 's/\[DAG TEST\] end task /  done /'
  grep -oE "DagRun Finished: dag_id=[^,]+, .*state=[a-z]+" "$log" | sed -E 's/, logical_date.*(state=[a-z]+)/: \1/'
  grep -q "state=success" "$log" || { echo "the rollout failed; see $log" >&2; exit 1; }
}

step "airflow dags test feature_rollout_manual   (rollout 1: v0 of a new view, backfill [$START, $END))"
rollout rollout-1

step "Schema edit: add the feature avg_daily_trips to driver_stats"
python - "$REPO/features.py" <<'PY'
import sys
from pathlib import Path
path = Path(sys.argv[1])
text = path.read_text()
old = '        Field(name="trips_today", dtype=Int64),\n'
assert old in text, "the demo definitions changed; update scripts/demo.sh"
path.write_text(text.replace(old, old + '        Field(name="avg_daily_trips", dtype=Int64),\n'))
PY
grep -n "avg_daily_trips" "$REPO/features.py"

step "airflow dags test feature_rollout_manual   (rollout 2: stage v1, backfill, parity vs v0, gate, promote)"
rollout rollout-2

cd "$REPO"
step "The plan of rollout 2   (feature-rollout plans --limit 1)"
feature-rollout plans --limit 1

step "Version history   (feature-rollout feature-views list-versions / history)"
feature-rollout feature-views list-versions driver_stats
feature-rollout feature-views history driver_stats

step "Materialization coverage and the parity report   (feature-rollout status driver_stats)"
feature-rollout status driver_stats

step "The parity report in full   (stored by the rollout's parity task)"
python - <<'PY'
from feature_rollout import FeatureStore
[report] = FeatureStore(".").parity_reports("driver_stats", limit=1)
print(report.render())
PY

printf '\nThe Airflow logs of both runs are in %s/rollout-{1,2}.log\n' "$DEMO_DIR"
cat <<EOT
To see the same history in the Airflow UI (Browse -> Feature rollout), run:
  AIRFLOW_HOME=$AIRFLOW_HOME AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT='$AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT' \\
    $(command -v airflow) api-server --port 8080
and log in as admin with the password in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated
EOT
