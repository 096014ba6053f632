"""Parse time for the ingest DAGs: read every mapping file with tongban.mapping.load_mapping — local files only,
no network, no database — and turn each into an `IngestPlan` (DAG id, schedule, retry policy) or a
`MappingFileError` naming the file, the line and the rule. Airflow re-parses DAG files every few seconds, so
this stays cheap (Airflow itself is imported only to check a cron schedule).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from tongban.mapping import MappingFileError, load_mapping
from tongban.scheduling.common import (DAG_ID_SAFE, PRESETS_WITHOUT_CRON, TIMEZONE, discover_plans, mappings_dir,
                                      retry_args)

DAG_PREFIX = "ingest__"
POOL_PREFIX = "legacy__"  # one Airflow pool per legacy system (tongban.scheduling.pools)
DEFAULT_CONCURRENCY = 1   # parallel calls a legacy system sees from tongban when its file says nothing
MAX_CONCURRENCY = 64
# `attempts` counts every try, the first included (the same meaning as `source.retry.attempts`).
DEFAULT_RETRIES = {"attempts": 3, "delay_seconds": 60, "max_delay_seconds": 900}


def mapping_files(directory: Path | None = None) -> list[Path]:
    directory = directory or mappings_dir()
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


@dataclass(frozen=True)
class IngestPlan:
    """What the factory needs to make one ingest DAG from one mapping file."""

    path: Path
    system: str
    department: str
    description: str
    schedule: str | None
    attempts: int
    delay_seconds: float
    max_delay_seconds: float
    concurrency: int = DEFAULT_CONCURRENCY
    maintenance: tuple = ()  # tongban.scheduling.maintenance.Window, from the file's `maintenance:`

    @property
    def dag_id(self) -> str:
        return f"{DAG_PREFIX}{self.system}"

    @property
    def pool(self) -> str:
        """The Airflow pool every task calling this legacy system takes a slot of (`concurrency:` slots)."""
        return f"{POOL_PREFIX}{self.system}"

    def retry_args(self) -> dict[str, Any]:
        return retry_args(self.attempts - 1, timedelta(seconds=self.delay_seconds),
                          timedelta(seconds=self.max_delay_seconds))


def _line(doc, key: str, sub: str | None = None) -> int | None:
    lines = getattr(doc, "key_lines", {}) or {}
    if sub is not None:
        node = doc.get(key)
        sub_lines = getattr(node, "key_lines", {}) or {}
        return sub_lines.get(sub) or lines.get(key)
    return lines.get(key)


def _retries(path: Path, doc) -> dict[str, float]:
    given = doc.get("retries") or {}
    where = str(path)
    if not isinstance(given, dict):
        raise MappingFileError(where, _line(doc, "retries"),
                               "retries: is a mapping {attempts, delay_seconds, max_delay_seconds}")
    unknown = set(given) - set(DEFAULT_RETRIES)
    if unknown:
        raise MappingFileError(where, _line(doc, "retries", sorted(unknown)[0]),
                               f"retries: unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(DEFAULT_RETRIES)})")
    values = {**DEFAULT_RETRIES, **given}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise MappingFileError(where, _line(doc, "retries", key),
                                   f"retries.{key} must be a number ≥ 0, not {value!r}")
    if values["attempts"] < 1 or int(values["attempts"]) != values["attempts"]:
        raise MappingFileError(where, _line(doc, "retries", "attempts"),
                               f"retries.attempts counts every try and must be a whole number ≥ 1, not {values['attempts']!r}")
    if values["max_delay_seconds"] < values["delay_seconds"]:
        raise MappingFileError(where, _line(doc, "retries", "max_delay_seconds"),
                               "retries.max_delay_seconds must not be smaller than retries.delay_seconds")
    return values


def plan_for(path: Path) -> IngestPlan:
    """Read one mapping file into an IngestPlan; raises MappingFileError (file, line, rule)."""
    mapping = load_mapping(path)
    doc = mapping.doc
    if not DAG_ID_SAFE.match(mapping.system):
        raise MappingFileError(str(path), _line(doc, "system"),
                               f"system {mapping.system!r} may use only letters, digits, '-', '_' and '.' "
                               "(it becomes the DAG id ingest__<system>)")
    schedule = mapping.schedule
    if schedule is not None and not isinstance(schedule, str):
        raise MappingFileError(str(path), _line(doc, "schedule"),
                               f"schedule must be a cron expression or a preset such as @hourly, not {schedule!r}")
    if schedule is not None and schedule not in PRESETS_WITHOUT_CRON:
        # Ask Airflow's own timetable, so that what passes here also passes when the DAG is built.
        from airflow.sdk import CronTriggerTimetable

        try:
            CronTriggerTimetable(schedule, timezone=TIMEZONE).validate()
        except Exception as exc:
            raise MappingFileError(str(path), _line(doc, "schedule"),
                                   f"schedule {schedule!r} is not a cron expression or preset (@hourly …): {exc}") from exc
    retries = _retries(path, doc)
    from tongban.scheduling.maintenance import parse_windows

    return IngestPlan(path=path, system=mapping.system, department=mapping.department,
                      description=str(doc.get("description") or ""), schedule=schedule,
                      attempts=int(retries["attempts"]), delay_seconds=float(retries["delay_seconds"]),
                      max_delay_seconds=float(retries["max_delay_seconds"]), concurrency=_concurrency(path, doc),
                      maintenance=parse_windows(str(path), doc))


def _concurrency(path: Path, doc) -> int:
    """`concurrency: N`: at most N tasks call this legacy system at once, however many workers run."""
    value = doc.get("concurrency", DEFAULT_CONCURRENCY)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise MappingFileError(str(path), _line(doc, "concurrency"),
                               f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY} (parallel calls the "
                               f"legacy system can bear), not {value!r}")
    return value


def discover(directory: Path | None = None) -> tuple[list[IngestPlan], list[MappingFileError]]:
    """Every mapping file as a plan, or as the error that keeps it from being one. Never raises for one bad file."""
    return discover_plans(mapping_files(directory), plan_for, lambda plan: plan.system,
                          lambda path: _line(load_mapping(path).doc, "system"))


def describe_errors(errors: list[MappingFileError]) -> str:
    count = f"{len(errors)} mapping file{'s' if len(errors) != 1 else ''}"
    lines = [f"{count} cannot become an ingest DAG (the other mapping files are unaffected):"]
    lines += [f"  {exc}" for exc in errors]
    return "\n".join(lines)
