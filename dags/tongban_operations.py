"""Operations DAGs: the periodic chores around the bus (later issues add theirs here).

ops__replay     every 10 minutes: replays the parked deliveries and quarantined records an operator marked for
                replay (tongban.replay_marks.mark_for_replay), through the same code as `tongban parked replay`.
ops__reconcile  hourly: every delivered event has its signed receipt, and per 实施编码 the platform's case count
                matches the ledger's; fails, listing the gaps, when they differ.

Neither touches the per-message hot path: replay re-publishes to the bus and the bus workers deliver.
"""
from __future__ import annotations

import os
import sys
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowFailException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tongban_dagkit as kit  # noqa: E402

START = pendulum.datetime(2026, 1, 1, tz=kit.TIMEZONE)
# The platform or the bus being briefly away is worth a retry; a reconciliation gap is not (it is the finding).
OPS_RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=60), "retry_exponential_backoff": kit.BACKOFF_MULTIPLIER,
               "max_retry_delay": timedelta(minutes=10)}


def _fail_fast(function):
    try:
        return function()
    except kit.Permanent as exc:
        raise AirflowFailException(str(exc)) from exc


@dag(dag_id="ops__replay", schedule="*/10 * * * *", start_date=START, catchup=False, max_active_runs=1,
     default_args=OPS_RETRIES, tags=["tongban", "operations"],
     doc_md="Replays parked deliveries and quarantined records marked for replay by an operator.")
def ops_replay():
    @task
    def replay_marked() -> dict:
        return _fail_fast(kit.replay_task)

    replay_marked()


@dag(dag_id="ops__reconcile", schedule="@hourly", start_date=START, catchup=False, max_active_runs=1,
     default_args=OPS_RETRIES, tags=["tongban", "operations"],
     doc_md="Reconciles the ledger with 渝快办: receipts for every delivery, case counts per 实施编码.")
def ops_reconcile():
    @task
    def reconcile() -> dict:
        return _fail_fast(kit.reconcile_task)

    reconcile()


ops_replay()
ops_reconcile()
