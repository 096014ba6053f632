"""Audit DAG (审计): signed ledger checkpoints, an Airflow chore like the operations DAGs (dags/tongban_operations.py).

ops__audit_checkpoint   hourly: verifies the hash chain and every earlier checkpoint against the ledger, then signs
                        the current tree head with tongban's audit key (tongban.audit.tasks.checkpoint_task). A
                        ledger that no longer matches fails the run without retry and signs nothing.
"""
from __future__ import annotations

from datetime import timedelta

from tongban.scheduling.common import retry_args
from tongban.scheduling.dag_parts import chore_dag

# The database being briefly away is worth a retry; a ledger that does not match its checkpoints is not.
AUDIT_RETRIES = retry_args(2, timedelta(seconds=60), timedelta(minutes=10))

chore_dag("ops__audit_checkpoint", schedule="@hourly", task_id="checkpoint", call="tongban.audit.tasks:checkpoint_task",
          retries=AUDIT_RETRIES, tags=["operations", "audit"],
          doc="Checks the ledger against its signed checkpoints, then signs the current tree head (RFC 6962) with "
              "tongban's audit key.")
