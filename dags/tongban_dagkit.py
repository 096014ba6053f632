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


# ------------------------------------------------------------------------------------------ flowback sources
# National data flowback (数据回流): every ministry source file in <mappings>/flowback/sources/ becomes a DAG
# `flowback__<source>`. The same split as the ingest DAGs: parse time reads local files only (the `${NAME}`
# references are expanded again at run time, with the worker's environment).
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


def run_flowback_task(path: str) -> dict[str, Any]:
    """One flowback run: fetch the source's new batches → route by 行政区划 → deliver to the district sinks →
    reconcile each batch. Returns the report (`FlowbackRunReport.to_dict()`).

    An unbalanced report fails at once, without retry: the batches are already routed and moved out of the
    source's reach, so a retry would find nothing new, reconcile nothing and pass — hiding the gap. Errors
    raised while fetching (the ministry service away) propagate and Airflow retries them."""
    from tongban.flowback import run_flowback_source

    try:
        flowback_plan_for(Path(path))  # the file may have changed since the DAG was parsed
    except MappingFileError as exc:
        raise Permanent(str(exc)) from exc
    result = run_flowback_source(path).to_dict()
    delivery = result["delivery"] or {}
    log.info("%s: %d batches (%d duplicate), %d unreadable; delivered %d, duplicates %d, retried %d, parked %d",
             result["source"], len(result["batches"]), sum(1 for b in result["batches"] if b["duplicate"]),
             len(result["unreadable"]), delivery.get("delivered", 0), delivery.get("duplicates", 0),
             delivery.get("retried", 0), delivery.get("parked", 0))
    problems: list[str] = [f"unreadable: {what}" for what in result["unreadable"]]
    for batch in result["batches"]:
        log.info("  batch %s: %d records in, %d routed, %d quarantined%s", batch["batch_id"], batch["records_in"],
                 batch["routed"], batch["quarantined"], f", error: {batch['error']}" if batch["error"] else "")
        if batch["error"]:
            problems.append(f"batch {batch['batch_id']}: {batch['error']}")
    for rec in result["reconciliations"]:
        for gap in rec["gaps"]:
            problems.append(f"batch {rec['batch_id']}: {gap}")
    if not result["balanced"]:
        raise Permanent(f"flowback {result['source']} does not balance (`tongban flowback report` shows the batches):\n"
                        + "\n".join(f"  {p}" for p in problems or ["(see the task log)"]))
    return result


# ------------------------------------------------------------------------------------------ daily / hourly chores
def catalog_sync_task() -> dict[str, Any]:
    """Sync the unified item catalogue (统一事项标准) and judge what it means for the mapping files."""
    from tongban.catalog import sync_and_report

    return judge_catalog_report(sync_and_report(mappings_dir=mappings_dir()))


def judge_catalog_report(report: dict[str, Any]) -> dict[str, Any]:
    """Log the catalogue report per mapping file; fail (Permanent: a retry changes nothing, a person must edit
    the mapping table) when a mapping file sends a withdrawn 实施编码 or has any other catalogue problem.

    Returns the report plus `affected_files` ({file: {codes, open_cases, quarantined, rows}}) and
    `problems_by_file` ({file: [problem, …]}, files with problems only)."""
    by_file: dict[str, dict[str, Any]] = {}
    for row in report.get("affected") or []:
        entry = by_file.setdefault(row["mapping_file"], {"codes": {}, "rows": []})
        entry["rows"].append(row)
        entry["codes"][row["code"]] = (row.get("open_cases", 0), row.get("quarantined", 0))
    affected_files = {
        path: {"codes": sorted(entry["codes"]), "rows": entry["rows"],
               # counts are per 实施编码: two legacy codes sending the same withdrawn code count its cases once
               "open_cases": sum(n for n, _ in entry["codes"].values()),
               "quarantined": sum(n for _, n in entry["codes"].values())}
        for path, entry in sorted(by_file.items())}
    problems_by_file = {path: [_problem_text(p) for p in found]
                        for path, found in sorted((report.get("mapping_problems") or {}).items()) if found}
    log.info("catalogue version %s (previous %s)%s", report.get("version"), report.get("previous_version"),
             ", newly stored" if report.get("stored") else ", unchanged")
    lines: list[str] = []
    for path, entry in affected_files.items():
        lines.append(f"{path}: sends withdrawn 实施编码 {', '.join(entry['codes'])} — "
                     f"{entry['open_cases']} open cases, {entry['quarantined']} quarantined")
    for path, found in problems_by_file.items():
        lines += [f"{path}: {p}" for p in found]
    for line in lines:
        log.warning(line)
    result = {**report, "affected_files": affected_files, "problems_by_file": problems_by_file}
    if affected_files or problems_by_file:
        raise Permanent("the unified item catalogue no longer fits the mapping files (fix the mapping tables, "
                        "then `tongban quarantine replay --stage catalog`):\n" + "\n".join(f"  {l}" for l in lines))
    return result


def _problem_text(problem: dict[str, Any]) -> str:
    where = f"{problem['table']}: {problem['legacy_code']} → {problem['code']}: " if problem.get("table") else ""
    return f"{where}{problem['kind']}: {problem['rule']}"


class IdentityServiceThrottled(Exception):
    """The unified user service (统一用户) answered 429 or was away: worth an Airflow retry later."""


def identity_retry_task() -> dict[str, Any]:
    """Ask the unified user service again about waiting applicants and replay the cases that now resolve.
    When the service throttled the run, raise after the work done so far is saved, so that Airflow retries
    the rest later (resolved answers are stored; a retry does not ask them again)."""
    from tongban.identity import retry_unresolved

    settings, store, bus, platform = _context()
    try:
        summary = retry_unresolved(store=store, platform=platform, bus=bus, settings=settings,
                                   mappings_dir=mappings_dir())
    finally:
        bus.close()
        platform.close()
    log.info("identity retry: asked %d, resolved %d, still unresolved %d, replayed %d, still waiting %d%s",
             summary["asked"], summary["resolved"], summary["still_unresolved"], summary["replayed"],
             summary["waiting"], ", throttled" if summary["throttled"] else "")
    if summary["throttled"]:
        raise IdentityServiceThrottled(f"the unified user service throttled the retry after {summary['asked']} "
                                       f"applicants; {summary['waiting']} cases still wait (Airflow retries)")
    return summary
