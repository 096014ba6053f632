"""Parse time for the flowback DAGs (数据回流): every ministry source file in <mappings>/flowback/sources/
becomes a `FlowbackPlan` for a DAG `flowback__<source>`, or a `MappingFileError` naming the file, the line and
the rule. The same split as the ingest DAGs: parse time reads local files only (the `${NAME}` references are
expanded again at run time, with the worker's environment).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from tongban.mapping import MappingFileError
from tongban.scheduling.common import (DAG_ID_SAFE, PRESETS_WITHOUT_CRON, TIMEZONE, discover_plans, mappings_dir,
                                      retry_args)

FLOWBACK_PREFIX = "flowback__"
# A source file declares no retry policy: a ministry service that is briefly away is worth two more tries; an
# unbalanced batch is not (it is the finding, see run_flowback_task).
FLOWBACK_RETRIES = retry_args(2, timedelta(seconds=60), timedelta(minutes=10))


def flowback_sources_dir(directory: Path | None = None) -> Path:
    """<mappings>/flowback/sources, beside the mapping files (TONGBAN_MAPPINGS moves both)."""
    return (directory or mappings_dir()) / "flowback" / "sources"


def flowback_source_files(directory: Path | None = None) -> list[Path]:
    folder = flowback_sources_dir(directory)
    return sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def schedule_problem(schedule: Any) -> str | None:
    """Why Airflow would refuse `schedule`, or None. Asks Airflow's own timetable, as plan_for does."""
    if schedule is None or schedule in PRESETS_WITHOUT_CRON:
        return None
    if not isinstance(schedule, str):
        return f"schedule must be a cron expression or a preset such as @hourly, not {schedule!r}"
    from airflow.sdk import CronTriggerTimetable

    try:
        CronTriggerTimetable(schedule, timezone=TIMEZONE).validate()
    except Exception as exc:
        return f"schedule {schedule!r} is not a cron expression or preset (@hourly …): {exc}"
    return None


def _top_level_line(path: Path, key: str) -> int | None:
    """The line of a top-level key (`key:` at column 0); good enough to point a person at the right place."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return next((n for n, text in enumerate(lines, 1) if re.match(rf"{re.escape(key)}\s*:", text)), None)


@dataclass(frozen=True)
class FlowbackPlan:
    """What the factory needs to make one flowback DAG from one ministry source file."""

    path: Path
    source: str
    name: str
    schedule: str | None
    transport: str  # the source's adapter: files, soap, rest …

    @property
    def dag_id(self) -> str:
        return f"{FLOWBACK_PREFIX}{self.source}"


def flowback_plan_for(path: Path) -> FlowbackPlan:
    """Read one source file (tongban.flowback.load_flowback_mapping, the shared mapping loader) into a plan;
    raises MappingFileError naming the file, the line and the rule."""
    from tongban.flowback import load_flowback_mapping

    mapping = load_flowback_mapping(path)
    if not DAG_ID_SAFE.match(mapping.system):
        raise MappingFileError(str(path), _top_level_line(path, "system"),
                               f"system {mapping.system!r} may use only letters, digits, '-', '_' and '.' "
                               "(it becomes the DAG id flowback__<system>)")
    problem = schedule_problem(mapping.schedule)
    if problem:
        raise MappingFileError(str(path), _top_level_line(path, "schedule"), problem)
    return FlowbackPlan(path=path, source=mapping.system, name=mapping.name, schedule=mapping.schedule,
                        transport=str(mapping.source["adapter"]))


def discover_flowback(directory: Path | None = None) -> tuple[list[FlowbackPlan], list[MappingFileError]]:
    """Every flowback source file as a plan, or as the error that keeps it from being one. Never raises."""
    return discover_plans(flowback_source_files(directory), flowback_plan_for, lambda plan: plan.source,
                          lambda path: _top_level_line(path, "system"))


def describe_flowback_errors(errors: list[MappingFileError]) -> str:
    count = f"{len(errors)} flowback source file{'s' if len(errors) != 1 else ''}"
    return "\n".join([f"{count} cannot become a flowback DAG (the other source files are unaffected):",
                      *[f"  {exc}" for exc in errors]])
