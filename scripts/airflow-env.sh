# Sourced by scripts/airflow-standalone and scripts/airflow-node: the one place that says how Airflow runs tongban's
# DAGs. Every value can be overridden from the environment (AIRFLOW__SECTION__KEY, TONGBAN_*), which is how a
# multi-machine deployment and the tests (tests/test_airflow_scheduler.py, tests/test_airflow_celery.py) use it.
# With `--sandbox` as the first argument of the calling script, the mapping files point at `tongban sandbox up`.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
if [[ ! -x "$VENV/bin/airflow" ]]; then
  echo "no Airflow in $VENV: run \`make venv\` first" >&2
  exit 1
fi
# Airflow starts its components as `airflow …` subprocesses: the venv's bin must come first on PATH.
export PATH="$VENV/bin:$PATH"

export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.tongban/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$ROOT/dags}"
export AIRFLOW__CORE__LOAD_EXAMPLES=False                 # must be set before the first `airflow db migrate`
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db}"
if [[ "$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" == postgresql+psycopg://* ]]; then
  # psycopg 3 (the project's driver) serves Airflow's async engine too; without this Airflow asks for asyncpg.
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC:-$AIRFLOW__DATABASE__SQL_ALCHEMY_CONN}"
fi
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"
export AIRFLOW__API__PORT="${AIRFLOW_PORT:-${AIRFLOW__API__PORT:-8080}}"
export AIRFLOW__API__BASE_URL="${AIRFLOW__API__BASE_URL:-http://127.0.0.1:${AIRFLOW__API__PORT}}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-${AIRFLOW__API__BASE_URL}/execution/}"
# New mapping files should show up quickly (the default is every 5 minutes).
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}"

# tongban's own settings: the same store the CLI uses, so `tongban trace` sees what the DAGs did.
export TONGBAN_HOME="${TONGBAN_HOME:-$ROOT/.tongban}"
export TONGBAN_MAPPINGS="${TONGBAN_MAPPINGS:-$ROOT/mappings}"

# `export_defaults NAME=VALUE…` exports each NAME with VALUE unless the environment already gives it one (as
# `export NAME="${NAME:-VALUE}"` does): for a group of values that do not depend on one another.
export_defaults() {
  local pair name
  for pair in "$@"; do
    name="${pair%%=*}"
    export "$name=${!name:-${pair#*=}}"
  done
}

if [[ "${1:-}" == "--sandbox" ]]; then
  # Matches `tongban sandbox up` run from the checkout (fixed ports 8700–8702, drop folder under TONGBAN_HOME);
  # sandbox values, not secrets.
  export_defaults TONGBAN_PLATFORM_URL=http://127.0.0.1:8700 CQ_SAMR_URL=http://127.0.0.1:8701 \
    CQ_SAMR_TOKEN=sandbox-legacy-token "CQ_HRSS_WSDL=http://127.0.0.1:8702/hrss/CaseService?wsdl" CQ_HRSS_USER=hrss \
    "CQ_HRSS_PASSWORD=${SANDBOX_HRSS_PASSWORD:-sandbox-hrss-password}" "CQ_WSJKW_DROP=$TONGBAN_HOME/sandbox/drops/wsjkw"
fi

# Create or upgrade the metadata database, then one Airflow pool per legacy system, sized by its mapping file's
# `concurrency:` (tongban.scheduling.pools): every ingest task of that system takes a slot of it.
airflow_prepare() {
  mkdir -p "$AIRFLOW_HOME"
  airflow db migrate >/dev/null
  "$VENV/bin/python" -m tongban.scheduling.pools "$AIRFLOW_HOME/tongban-pools.json"
  airflow pools import "$AIRFLOW_HOME/tongban-pools.json" >/dev/null
}
