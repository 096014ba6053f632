"""What the DAG files in dags/ share and Airflow supplies: the start date, a task body's permanent failure, a
factory's one-DAG-per-plan loop, and the one-task chore DAG. Imported by the DAG files only (it imports Airflow; tongban/scheduling/common.py
does not)."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable

import pendulum
from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowFailException

from tongban.scheduling.common import TIMEZONE, Permanent, log

START = pendulum.datetime(2026, 1, 1, tz=TIMEZONE)


def fail_fast(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)`, with a `Permanent` failure failing the task at once (Airflow does not retry it)."""
    try:
        return function(*args)
    except Permanent as exc:
        raise AirflowFailException(str(exc)) from exc


def build_each(plans: Iterable[Any], build: Callable[[Any], object], what: str) -> dict[str, object]:
    """One DAG per plan, by `plan.dag_id` (`what`: the kind of file a plan comes from, for the log). The plans already passed what Airflow checks (the schedule); should
    Airflow still refuse one, that file alone goes missing and the processor's log names it — the others load."""
    dags = {}
    for plan in plans:
        try:
            dags[plan.dag_id] = build(plan)
        except Exception:
            log.exception("%s %s: Airflow refused its DAG", what, plan.path)
    return dags


def chore_dag(dag_id: str, *, schedule: str, task_id: str, call: str, retries: dict[str, Any], tags: list[str],
              doc: str, permanent_fails: bool = True):
    """A chore: a DAG of one task that calls `call` ("module:function", imported when the task runs, so that parsing
    the DAG file stays cheap) and returns its result as the XCom. One run at a time. With `permanent_fails`, a
    `Permanent` failure fails the task at once (fail_fast); anything else is retried as `retries` says."""
    module, _, name = call.partition(":")

    @dag(dag_id=dag_id, schedule=schedule, start_date=START, catchup=False, max_active_runs=1, default_args=retries,
         tags=["tongban", *tags], doc_md=doc)
    def chore():
        @task(task_id=task_id)
        def run() -> dict:
            function = getattr(importlib.import_module(module), name)
            return fail_fast(function) if permanent_fails else function()

        run()

    return chore()
