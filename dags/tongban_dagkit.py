"""Shared by the tongban DAG files (listed in .airflowignore: this module defines no DAG itself).

Two halves:
- parse time (`discover`): read every mapping file with tongban.mapping.load_mapping — local files only, no
  network, no database — and turn each into an `IngestPlan` (DAG id, schedule, retry policy) or a
  `MappingFileError` naming the file, the line and the rule. Airflow re-parses DAG files every few seconds, so
  this stays cheap.
- run time (`run_ingest_task`, `report_task`, …): plain Python called from the TaskFlow tasks, so the same code is
  testable without Airflow. Errors are sorted into "worth retrying" (propagate; Airflow retries with backoff) and
  "retrying cannot help" (`Permanent`; the DAG file turns it into AirflowFailException, no retry).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from tongban.mapping import MappingFileError, load_mapping

log = logging.getLogger("tongban.dags")

REPO = Path(__file__).resolve().parent.parent
DAG_PREFIX = "ingest__"
# `attempts` counts every try, the first included (the same meaning as `source.retry.attempts`).
DEFAULT_RETRIES = {"attempts": 3, "delay_seconds": 60, "max_delay_seconds": 900}
BACKOFF_MULTIPLIER = 2.0  # each wait doubles, up to max_delay_seconds
DAG_ID_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
TIMEZONE = "Asia/Shanghai"  # schedules are read in Chongqing time
PRESETS_WITHOUT_CRON = {"@once", "@continuous"}


class Permanent(Exception):
    """A failure that a retry cannot fix (broken mapping file, refused credentials): fail the task now."""


def mappings_dir() -> Path:
    """TONGBAN_MAPPINGS, else the checkout's mappings/ (not the working directory: Airflow's is arbitrary)."""
    configured = os.environ.get("TONGBAN_MAPPINGS")
    return Path(configured).resolve() if configured else REPO / "mappings"


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

    @property
    def dag_id(self) -> str:
        return f"{DAG_PREFIX}{self.system}"

    def retry_args(self) -> dict[str, Any]:
        return {"retries": self.attempts - 1, "retry_delay": timedelta(seconds=self.delay_seconds),
                "retry_exponential_backoff": BACKOFF_MULTIPLIER,
                "max_retry_delay": timedelta(seconds=self.max_delay_seconds)}


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
    return IngestPlan(path=path, system=mapping.system, department=mapping.department,
                      description=str(doc.get("description") or ""), schedule=schedule,
                      attempts=int(retries["attempts"]), delay_seconds=float(retries["delay_seconds"]),
                      max_delay_seconds=float(retries["max_delay_seconds"]))


def discover(directory: Path | None = None) -> tuple[list[IngestPlan], list[MappingFileError]]:
    """Every mapping file as a plan, or as the error that keeps it from being one. Never raises for one bad file."""
    plans: list[IngestPlan] = []
    errors: list[MappingFileError] = []
    seen: dict[str, Path] = {}
    for path in mapping_files(directory):
        try:
            plan = plan_for(path)
        except MappingFileError as exc:
            errors.append(exc)
            continue
        except Exception as exc:  # a bug in a loader must still name the file, not take every DAG down
            errors.append(MappingFileError(str(path), None, f"{type(exc).__name__}: {exc}"))
            continue
        if plan.system in seen:
            errors.append(MappingFileError(str(path), _line(load_mapping(path).doc, "system"),
                                           f"system {plan.system!r} is already declared by {seen[plan.system]}"))
            continue
        seen[plan.system] = path
        plans.append(plan)
    return plans, errors


def describe_errors(errors: list[MappingFileError]) -> str:
    count = f"{len(errors)} mapping file{'s' if len(errors) != 1 else ''}"
    lines = [f"{count} cannot become an ingest DAG (the other mapping files are unaffected):"]
    lines += [f"  {exc}" for exc in errors]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ run time
def _context():
    from tongban.bus import open_bus
    from tongban.platform_client import PlatformClient
    from tongban.settings import load
    from tongban.store import open_store

    settings = load()
    return settings, open_store(settings.db_url), open_bus(settings, announce=log.info), PlatformClient(settings)


def check_mapping_task(path: str) -> dict[str, Any]:
    """Re-read the file at run time (it may have changed since the DAG was parsed)."""
    try:
        plan = plan_for(Path(path))
    except MappingFileError as exc:
        raise Permanent(str(exc)) from exc
    return {"system": plan.system, "path": str(plan.path)}


def run_ingest_task(path: str) -> dict[str, Any]:
    """One ingest run: fetch since the watermark → map, validate → publish with confirms → advance the watermark.

    One task on purpose: the watermark may move only after the broker confirmed the publish, in the same process;
    split across tasks, a crash between them would need the publish state carried in XCom. A failure anywhere
    leaves the watermark where it was, and the next try recomputes the same idempotency keys (duplicates are
    dropped before delivery)."""
    from adapters.base import SourceError, TransientSourceError
    from tongban.ingest import run_ingest

    try:
        mapping = load_mapping(Path(path))
    except MappingFileError as exc:
        raise Permanent(str(exc)) from exc
    settings, store, bus, platform = _context()
    try:
        report = run_ingest(mapping, store=store, bus=bus, platform=platform)
    except TransientSourceError:
        raise  # the legacy system is down or slow: Airflow retries with backoff
    except SourceError as exc:
        raise Permanent(f"{exc} (a retry cannot fix this; fix the source settings or credentials)") from exc
    finally:
        bus.close()
        platform.close()
    log.info("%s: fetched %d, unchanged %d, cases changed %d, events published %d, quarantined %d, watermark %s → %s",
             report.system, report.fetched, report.unchanged, report.cases_changed, report.events_published,
             report.quarantined, report.watermark_before, report.watermark_after)
    return report.as_dict()


def report_task(result: dict[str, Any]) -> dict[str, Any]:
    """Counts for the run's log and XCom; a run that quarantined every record it fetched fails (the mapping or the
    source changed shape: someone must look), though its work is kept."""
    lines = [f"{result['system']}: fetched {result['fetched']}, unchanged {result['unchanged']}, "
             f"cases changed {result['cases_changed']}, events published {result['events_published']}, "
             f"quarantined {result['quarantined']}"]
    for reason, n in sorted((result.get("quarantine_reasons") or {}).items()):
        lines.append(f"  quarantined {n}: {reason}")
    for name in result.get("failed_files") or []:
        lines.append(f"  failed file: {name}")
    for line in lines:
        log.info(line)
    if result["fetched"] and result["quarantined"] >= result["fetched"]:
        raise Permanent(f"every one of the {result['fetched']} records fetched was quarantined: check the mapping "
                        f"file and `tongban quarantine list --system {result['system']}`")
    return {"summary": lines[0], **result}


def replay_task() -> dict[str, Any]:
    from tongban.replay_marks import replay_marked

    settings, store, bus, platform = _context()
    try:
        result = replay_marked(store, bus, platform=platform, mappings_dir=mappings_dir())
    finally:
        bus.close()
        platform.close()
    for message in result.messages:
        log.info(message)
    return result.as_dict()


def reconcile_task() -> dict[str, Any]:
    from tongban.reconcile import reconcile
    from tongban.platform_client import PlatformClient
    from tongban.settings import load
    from tongban.store import open_store

    settings = load()
    platform = PlatformClient(settings)
    try:
        report = reconcile(open_store(settings.db_url), platform)
    finally:
        platform.close()
    log.info("reconcile: %d delivered events, %d in flight, ledger cases by item %s, platform %s",
             report.delivered_events, report.in_flight, report.delivered_cases_by_item, report.platform_cases_by_item)
    if report.gaps:
        raise Permanent("reconciliation found gaps:\n" + "\n".join(f"  {g}" for g in report.gaps))
    return report.as_dict()
