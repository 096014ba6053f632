"""Audit DAG (审计): signed ledger checkpoints, the way the operations DAGs do their chores (dags/tongban_operations.py).

ops__audit_checkpoint   hourly: verifies the hash chain and every earlier checkpoint against the ledger, then signs
                        the current tree head with tongban's audit key (tongban.audit.tasks.checkpoint_task). A
                        ledger that no longer matches fails the run without retry and signs nothing.
"""
from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from tongban.scheduling.common import retry_args
from tongban.scheduling.dag_parts import START, fail_fast

# The database being briefly away is worth a retry; a ledger that does not match its checkpoints is not.
AUDIT_RETRIES = retry_args(2, timedelta(seconds=60), timedelta(minutes=10))


@dag(dag_id="ops__audit_checkpoint", schedule="@hourly", start_date=START, catchup=False, max_active_runs=1,
     default_args=AUDIT_RETRIES, tags=["tongban", "operations", "audit"],
     doc_md="Checks the ledger against its signed checkpoints, then signs the current tree head (RFC 6962) with "
            "tongban's audit key.")
def ops_audit_checkpoint():
    @task
    def checkpoint() -> dict:
        from tongban.audit.tasks import checkpoint_task

        return fail_fast(checkpoint_task)

    checkpoint()


ops_audit_checkpoint()
