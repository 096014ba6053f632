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
from tongban.scheduling.common import BACKOFF_MULTIPLIER, DAG_ID_SAFE, PRESETS_WITHOUT_CRON, TIMEZONE, mappings_dir

FLOWBACK_PREFIX = "flowback__"
# A source file declares no retry policy: a ministry service that is briefly away is worth two more tries; an
# unbalanced batch is not (it is the finding, see run_flowback_task).
FLOWBACK_RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=60), "retry_exponential_backoff": BACKOFF_MULTIPLIER,
                    "max_retry_delay": timedelta(minutes=10)}


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


def _flowback_config_error(path: Path, exc: Exception) -> MappingFileError:
    """A FlowbackConfigError as file:line: rule. Its pydantic cause (kept as __context__ although raised
    `from None`) says which field; without it the message is used as it is."""
    from pydantic import ValidationError

    cause = exc.__context__
    if isinstance(cause, ValidationError) and cause.errors():
        first = cause.errors()[0]
        loc = ".".join(str(part) for part in first["loc"]) or "(file)"
        more = len(cause.errors()) - 1
        rule = f"{loc}: {first['msg']}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
        return MappingFileError(str(path), _top_level_line(path, str(first["loc"][0])) if first["loc"] else None, rule)
    message = str(exc)
    prefix = f"{path}: "
    rule = message[len(prefix):] if message.startswith(prefix) else message
    section = re.match(r"([A-Za-z_]+): ", rule)  # "sinks: cannot read …" points at the `sinks:` line
    return MappingFileError(str(path), _top_level_line(path, section.group(1)) if section else None, rule)


@dataclass(frozen=True)
class FlowbackPlan:
    """What the factory needs to make one flowback DAG from one ministry source file."""

    path: Path
    source: str
    name: str
    schedule: str | None
    transport: str  # soap | files

    @property
    def dag_id(self) -> str:
        return f"{FLOWBACK_PREFIX}{self.source}"


def flowback_plan_for(path: Path) -> FlowbackPlan:
    """Read one source file (tongban.flowback.load_source_config) into a plan; raises MappingFileError."""
    import yaml

    from tongban.flowback import FlowbackConfigError, load_source_config

    try:
        config = load_source_config(path)
    except FlowbackConfigError as exc:
        raise _flowback_config_error(path, exc) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise MappingFileError(str(path), mark.line + 1 if mark else None,
                               f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    if not DAG_ID_SAFE.match(config.source):
        raise MappingFileError(str(path), _top_level_line(path, "source"),
                               f"source {config.source!r} may use only letters, digits, '-', '_' and '.' "
                               "(it becomes the DAG id flowback__<source>)")
    problem = schedule_problem(config.schedule)
    if problem:
        raise MappingFileError(str(path), _top_level_line(path, "schedule"), problem)
    return FlowbackPlan(path=path, source=config.source, name=config.name, schedule=config.schedule,
                        transport=config.transport.kind)


def discover_flowback(directory: Path | None = None) -> tuple[list[FlowbackPlan], list[MappingFileError]]:
    """Every flowback source file as a plan, or as the error that keeps it from being one. Never raises."""
    plans: list[FlowbackPlan] = []
    errors: list[MappingFileError] = []
    seen: dict[str, Path] = {}
    for path in flowback_source_files(directory):
        try:
            plan = flowback_plan_for(path)
        except MappingFileError as exc:
            errors.append(exc)
            continue
        except Exception as exc:  # a loader bug must still name the file, not take every DAG down
            errors.append(MappingFileError(str(path), None, f"{type(exc).__name__}: {exc}"))
            continue
        if plan.source in seen:
            errors.append(MappingFileError(str(path), _top_level_line(path, "source"),
                                           f"source {plan.source!r} is already declared by {seen[plan.source]}"))
            continue
        seen[plan.source] = path
        plans.append(plan)
    return plans, errors


def describe_flowback_errors(errors: list[MappingFileError]) -> str:
    count = f"{len(errors)} flowback source file{'s' if len(errors) != 1 else ''}"
    return "\n".join([f"{count} cannot become a flowback DAG (the other source files are unaffected):",
                      *[f"  {exc}" for exc in errors]])
