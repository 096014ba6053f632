"""Run time: the bodies of the DAGs' TaskFlow tasks, plain Python so that the same code is testable without
Airflow. Errors are sorted into "worth retrying" (propagate; Airflow retries with backoff) and "retrying cannot
help" (`Permanent`; the DAG file turns it into AirflowFailException, no retry).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tongban.mapping import MappingFileError, load_mapping
from tongban.scheduling.common import Permanent, log, mappings_dir, ready_database
from tongban.scheduling.flowback_plans import flowback_plan_for
from tongban.scheduling.ingest_plans import plan_for


# ------------------------------------------------------------------------------------------ ingest
def _context():
    from tongban.bus import open_bus
    from tongban.platform.client import PlatformClient
    from tongban.settings import SettingsError, load
    from tongban.store import open_store

    ready_database()
    try:
        settings = load()
    except SettingsError as exc:  # a missing secret in production: retrying cannot fix it
        raise Permanent(str(exc)) from None
    return settings, open_store(settings.db_url), open_bus(settings, announce=log.info), PlatformClient(settings)


def check_mapping_task(path: str) -> dict[str, Any]:
    """Re-read the file at run time (it may have changed since the DAG was parsed)."""
    try:
        plan = plan_for(Path(path))
    except MappingFileError as exc:
        raise Permanent(str(exc)) from exc
    return {"system": plan.system, "path": str(plan.path)}


def maintenance_skip(path: str, run: str | None = None) -> str | None:
    """Why this run must be skipped (a maintenance window covers now: the mapping file's or an announced one), or
    None. A skip is a ledger event; the watermark stays, so the first run after the window catches up."""
    from tongban.scheduling.maintenance import window_at
    from tongban.scheduling.maintenance_tables import announced, record_skip
    from tongban.settings import SettingsError, load
    from tongban.store import open_store

    try:
        plan = plan_for(Path(path))
        settings = load()
    except (MappingFileError, SettingsError) as exc:
        raise Permanent(str(exc)) from exc
    ready_database()  # this is the run's first look at the store: the sandbox's database is upgraded here
    store = open_store(settings.db_url)
    window = window_at([*plan.maintenance, *(w for _, w in announced(store, plan.system))])
    if window is None:
        return None
    record_skip(store, plan.system, window, run)
    message = f"{plan.system} is in a maintenance window ({window.describe()}: {window.reason}; {window.origin}): " \
              "run skipped, the next run after the window catches up from the watermark"
    log.info(message)
    return message


def run_ingest_task(path: str) -> dict[str, Any]:
    """One ingest run: fetch since the watermark → map, validate → publish with confirms → advance the watermark.

    One task on purpose: the watermark may move only after the broker confirmed the publish, in the same process;
    split across tasks, a crash between them would need the publish state carried in XCom. A failure anywhere
    leaves the watermark where it was, and the next try recomputes the same idempotency keys (duplicates are
    dropped before delivery)."""
    from adapters.base import SourceError, TransientSourceError
    from tongban.pipeline.ingest import run_ingest

    try:
        mapping = load_mapping(Path(path))
    except MappingFileError as exc:
        raise Permanent(str(exc)) from exc
    from tongban.bus.topology import cases_work

    settings, store, bus, platform = _context()
    try:
        # The queue prefix from the settings, as the CLI's `tongban ingest` does.
        report = run_ingest(mapping, store=store, bus=bus, platform=platform, work=cases_work(settings.queue_prefix))
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


# ------------------------------------------------------------------------------------------ flowback
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
    ready_database()
    result = run_flowback_source(path).to_dict()
    delivery = result["delivery"] or {}
    log.info("%s: %d batches (%d duplicate), %d unreadable; delivered %d, held by sinks %d, retried %d, parked %d",
             result["source"], len(result["batches"]), sum(1 for b in result["batches"] if b["duplicate"]),
             len(result["unreadable"]), delivery.get("delivered", 0), delivery.get("held", 0),
             delivery.get("retried", 0), delivery.get("parked", 0))
    problems: list[str] = [f"unreadable: {what}" for what in result["unreadable"]]
    for batch in result["batches"]:
        log.info("  batch %s: %d records in, %d routed, %d quarantined (%s)%s", batch["batch_id"], batch["records_in"],
                 batch["routed"], batch["quarantined"], batch.get("accounting") or "-",
                 f", error: {batch['error']}" if batch["error"] else "")
        if batch["error"]:
            problems.append(f"batch {batch['batch_id']}: {batch['error']}")
    for rec in result["reconciliations"]:
        for gap in rec["gaps"]:
            problems.append(f"batch {rec['batch_id']}: {gap}")
    if not result["balanced"] and (problems or result["balanced"] is False):
        raise Permanent(f"flowback {result['source']} does not balance (`tongban flowback report` shows the batches):\n"
                        + "\n".join(f"  {p}" for p in problems or ["(see the task log)"]))
    return result


# ------------------------------------------------------------------------------------------ operations chores
def replay_task() -> dict[str, Any]:
    from tongban.operator.replay_marks import replay_marked

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
    from tongban.audit.reconcile import reconcile
    from tongban.platform.client import PlatformClient
    from tongban.settings import load
    from tongban.store import open_store

    ready_database()
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


def catalog_sync_task() -> dict[str, Any]:
    """Sync the unified item catalogue (统一事项标准) and judge what it means for the mapping files."""
    from tongban.catalog import sync_and_report

    ready_database()
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
