"""Audit DAG (审计): signed ledger checkpoints, the way the operations DAGs do their chores (dags/tongban_operations.py).

ops__audit_checkpoint   hourly: verifies the hash chain and every earlier checkpoint against the ledger, then signs
                        the current tree head with tongban's audit key (tongban.audit.tasks.checkpoint_task). A
                        ledger that no longer matches fails the run without retry and signs nothing.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowFailException

from tongban.scheduling.common import BACKOFF_MULTIPLIER, TIMEZONE, Permanent

START = pendulum.datetime(2026, 1, 1, tz=TIMEZONE)
# The database being briefly away is worth a retry; a ledger that does not match its checkpoints is not.
AUDIT_RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=60), "retry_exponential_backoff": BACKOFF_MULTIPLIER,
                 "max_retry_delay": timedelta(minutes=10)}


@dag(dag_id="ops__audit_checkpoint", schedule="@hourly", start_date=START, catchup=False, max_active_runs=1,
     default_args=AUDIT_RETRIES, tags=["tongban", "operations", "audit"],
     doc_md="Checks the ledger against its signed checkpoints, then signs the current tree head (RFC 6962) with "
            "tongban's audit key.")
def ops_audit_checkpoint():
    @task
    def checkpoint() -> dict:
        from tongban.audit.tasks import checkpoint_task

        try:
            return checkpoint_task()
        except Permanent as exc:
            raise AirflowFailException(str(exc)) from exc

    checkpoint()


ops_audit_checkpoint()
