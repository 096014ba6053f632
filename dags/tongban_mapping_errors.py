"""Broken mapping files, reported as one Airflow DAG import error.

Airflow records import errors per DAG *file*. The factory (tongban_ingest.py) must keep loading the good mapping
files, so it skips the broken ones silently; this separate file re-checks the same mapping files (cheap, local
files only) and raises when any is broken. The UI, `airflow dags list-import-errors` and
`DagBag(...).import_errors` then show exactly one error, attributed to this file, whose message names each
broken mapping file with its line and the rule it breaks. It defines no DAG when every file is good.
"""
from __future__ import annotations

import os
import sys

import pendulum  # noqa: F401  (kept light: no airflow DAG objects are made here)
from airflow.exceptions import AirflowException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tongban_dagkit as kit  # noqa: E402


class MappingFileInvalid(AirflowException):
    """One or more mapping files cannot become ingest DAGs."""


def _errors():
    plans, errors = kit.discover()
    # A file that parses but whose schedule Airflow refuses is broken too; ask Airflow the same way the factory does.
    from tongban_ingest import build_ingest_dag  # noqa: F401  (import cost: already imported by the processor)
    return errors + _schedule_errors(plans)


def _schedule_errors(plans):
    from airflow.sdk.definitions.dag import DAG
    from tongban_ingest import START

    found = []
    for plan in plans:
        try:
            DAG(dag_id=f"_schedule_check_{plan.system}", schedule=plan.schedule, start_date=START)
        except Exception as exc:
            found.append(kit.schedule_error(plan, exc))
    return found


_found = _errors()
if _found:
    raise MappingFileInvalid(kit.describe_errors(_found))
