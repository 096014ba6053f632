"""Broken mapping files, reported as one Airflow DAG import error.

Airflow records import errors per DAG *file*. The factory (tongban_ingest.py) must keep loading the good mapping
files, so it leaves the broken ones out; this separate file re-checks the same mapping files (cheap: local files
only, no network) and raises when any is broken. The UI, `airflow dags list-import-errors` and
`DagBag(...).import_errors` then show exactly one error, attributed to this file, whose message names each
broken mapping file with its line and the rule it breaks. When every file is good it defines nothing.
Broken flowback source files (mappings/flowback/sources/, left out by tongban_flowback.py) are reported in the
same error, after the mapping files.
(Airflow only imports files that mention "airflow" and "dag"; this docstring does.)
"""
from __future__ import annotations

from airflow.sdk.exceptions import AirflowException

from tongban.scheduling.flowback_plans import describe_flowback_errors, discover_flowback
from tongban.scheduling.ingest_plans import describe_errors, discover


class MappingFileInvalid(AirflowException):
    """One or more mapping files (or flowback source files) cannot become DAGs."""


_plans, _errors = discover()
_flowback_plans, _flowback_errors = discover_flowback()
_messages = ([describe_errors(_errors)] if _errors else []) + \
            ([describe_flowback_errors(_flowback_errors)] if _flowback_errors else [])
if _messages:
    raise MappingFileInvalid("\n".join(_messages))
