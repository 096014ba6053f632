"""What the DAG files in dags/ share and Airflow supplies: the start date, a task body's permanent failure, and a
factory's one-DAG-per-plan loop. Imported by the DAG files only (it imports Airflow; tongban/scheduling/common.py
does not)."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import pendulum
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
