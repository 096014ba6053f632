"""Scheduling: what the Airflow DAG files in dags/ declare, and the work their tasks do.

The DAG files only declare DAGs; the planning (which mapping file or flowback source becomes which DAG, on which
schedule, with which retries) and the task bodies live here, as plain Python that is testable without Airflow.

- common          what every DAG shares: the timezone, the backoff, `Permanent`, where the mapping files are.
- ingest_plans    mapping files → `IngestPlan` (DAG id, schedule, retries), or the error naming file, line, rule.
- flowback_plans  ministry source files (数据回流) → `FlowbackPlan`, or the error naming file, line, rule.
- tasks           the task bodies (ingest, report, replay, reconcile, flowback, catalogue sync, identity retry).

Importing this package does not import Airflow: only checking a cron schedule does, so the CLI stays fast.
"""
