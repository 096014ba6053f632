"""`tongban sandbox demo`: the sandbox end to end on the embedded defaults.

Starts the mock platform and legacy systems, then polls every mapping file a few times while the legacy
clocks advance (so cases progress between polls), delivers with a worker, and prints what happened:
fetched, delivered, quarantined by reason, and the full trace of one delivered case.
"""
from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()


@dataclass
class DemoResult:
    """What one demo run did, in the order the run learns it."""

    bus: str = ""
    fetched: int = 0           # summed over every poll's ingest reports
    events_published: int = 0
    delivered: int = 0         # summed over every poll's worker stats
    duplicates: int = 0
    bundles: dict = field(default_factory=dict)  # 一件事一次办: each bundle application's view
    quarantined: int = 0       # open in the store after the run (all runs), and by rule
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    platform_stats: dict = field(default_factory=dict)
    traced_case: str | None = None


# The sandbox's own mapping files: the checkout's mappings/ folder, beside the installed packages (an editable
# install, `make venv`, runs from the checkout), so the demo finds them from any working directory.
SANDBOX_MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"
SANDBOX_SYSTEMS = ("cq-samr-rest.yaml", "cq-hrss-soap.yaml", "cq-wsjkw-files.yaml")


class DemoMappingsMissing(FileNotFoundError):
    """The sandbox's mapping files are not where the installed package expects them."""


def demo_mappings_dir(given: Path | None = None) -> Path:
    """The folder of mapping files the demo runs: `given` (--mappings) when named, else the sandbox's own
    mappings next to the package, whatever the working directory or TONGBAN_MAPPINGS say (the demo runs the
    sandbox departments; a department's own mappings are for `tongban ingest`)."""
    if given is None:
        # beside the package (a checkout, an editable install), else a checkout we are standing in
        candidates = list(dict.fromkeys([SANDBOX_MAPPINGS, Path.cwd() / "mappings"]))
        found = [c for c in candidates if all((c / name).is_file() for name in SANDBOX_SYSTEMS)]
        if not found:
            raise DemoMappingsMissing(errno.ENOENT, f"the sandbox mapping files ({', '.join(SANDBOX_SYSTEMS)}) are "
                                                    f"in none of {', '.join(map(str, candidates))}; pass --mappings "
                                                    f"DIR (a checkout's mappings/)")
        directory = found[0].resolve()
    else:
        directory = Path(given).resolve()
    if not sorted(directory.glob("*.yaml")):
        raise DemoMappingsMissing(errno.ENOENT, f"no mapping files (*.yaml) in {directory}")
    return directory


def run_demo(*, polls: int = 4, days_per_poll: int = 4, cases: int = 1000, quiet: bool = False,
             mapping_files: list[Path] | None = None, mappings_dir: Path | None = None) -> DemoResult:
    if mapping_files:
        return _run_demo(polls, days_per_poll, cases, quiet, mapping_files)
    # The mock platform seeds its item catalogue from TONGBAN_MAPPINGS, and the mappings' tables and the
    # flowback files are found relative to this folder: point the whole run at it, and back afterwards.
    directory, before = demo_mappings_dir(mappings_dir), os.environ.get("TONGBAN_MAPPINGS")
    os.environ["TONGBAN_MAPPINGS"] = str(directory)
    try:
        return _run_demo(polls, days_per_poll, cases, quiet, None)
    finally:
        if before is None:
            os.environ.pop("TONGBAN_MAPPINGS", None)
        else:
            os.environ["TONGBAN_MAPPINGS"] = before


def _run_demo(polls: int, days_per_poll: int, cases: int, quiet: bool, mapping_files: list[Path] | None) -> DemoResult:
    from tongban.audit import ledger
    from tongban.operator import quarantine as q
    from tongban.bus import open_bus
    from tongban.delivery.worker import DeliveryWorker
    from tongban.pipeline.ingest import run_ingest
    from tongban.mapping import load_mapping
    from tongban.platform.client import PlatformClient
    from tongban.audit.views import print_trace
    from tongban.settings import load
    from tongban.store import open_store
    from tongban.store.schema import prepare_sandbox

    from .environment import Sandbox

    say = (lambda *a, **k: None) if quiet else console.print
    settings = load()
    sandbox = Sandbox(settings.home, cases=cases).start()
    settings = load()  # re-read: the sandbox exported its URLs
    say(f"[bold]tongban sandbox demo[/bold] — home {settings.home}")
    for name, url in sandbox.urls().items():
        say(f"  {name:<14} {url}")
    prepare_sandbox(settings)  # the sandbox's own database: upgraded to head, as `tongban db upgrade` would
    store = open_store(settings.db_url)
    bus = open_bus(settings, announce=say)
    say(f"  bus            {bus.name}   ledger {settings.db_url.split('://')[0]}")
    platform = PlatformClient(settings)
    result = DemoResult(bus=bus.name)
    before = ledger.count_by_hop(store)
    files = mapping_files or sorted(settings.mappings_dir.glob("*.yaml"))
    mappings = [load_mapping(path) for path in files]
    try:
        for poll in range(1, polls + 1):
            for mapping in mappings:
                report = run_ingest(mapping, store=store, bus=bus, platform=platform)
                result.fetched += report.fetched
                result.events_published += report.events_published
                say(f"poll {poll} {mapping.system}: fetched {report.fetched}, changed {report.cases_changed}, "
                    f"events {report.events_published}, quarantined {report.quarantined}")
            worker = DeliveryWorker(store=store, bus=bus, platform=platform)
            stats = worker.run(stop=threading.Event(), idle_exit=1.0, prefetch=50)
            result.delivered += stats.delivered
            result.duplicates += stats.duplicates
            say(f"        delivered {stats.delivered}, duplicates dropped {stats.duplicates}, retried {stats.retried}, "
                f"parked {stats.parked}, rejected {stats.rejected}")
            sandbox.advance(days_per_poll)
        _sealed_exchange(say, store, bus, settings, sandbox)
        _flowback_exchange(say, store, bus, settings)
        from .bundle_demo import run_bundle_demo

        result.bundles = run_bundle_demo(say, store=store, bus=bus, platform=platform, home=settings.home,
                                         platform_url=sandbox.servers["platform"].url)
        counts = q.counts(store)
        result.quarantined = counts["quarantined"]
        result.quarantine_reasons = counts["by_rule"]
        result.platform_stats = platform.get("/api/v1/stats")
        after = ledger.count_by_hop(store)
        _summary(say, result, before, after, counts)
        result.traced_case = _case_to_trace(store)
        if result.traced_case and not quiet:
            say(f"\n[bold]trace of one delivered case[/bold] ({result.traced_case}):")
            print_trace(store, result.traced_case)
        verified = ledger.verify(store)
        say(f"\nledger: {verified.events} events, hash chain {'verified' if verified.ok else 'BROKEN'}")
        _checkpoint(say, store, settings)
    finally:
        bus.close()
        platform.close()
        sandbox.stop()
    return result


def _checkpoint(say, store, settings) -> None:
    """Sign the ledger's tree head after the run (tongban audit checkpoint), so the run's events are covered."""
    from tongban.audit.checkpoints import take_checkpoint
    from tongban.audit.keys import audit_signer

    taken = take_checkpoint(store, audit_signer(settings))
    say(f"checkpoint #{taken['id']}: tree head over {taken['size']} events signed with the audit key "
        f"(tongban audit verify checks it; tongban audit export ID -o case.zip packs a case)")


def _sealed_exchange(say, store, bus, settings, sandbox) -> None:
    """One department exchanging sealed licences (电子证照 with e-seals). The licences are made once per home:
    a second demo run re-sends the same documents, which must not be delivered twice."""
    from .sealed_dept import run_sealed_demo

    licences = settings.home / "licences"
    if licences.exists() and any(licences.iterdir()):
        say("sealed licences: already exchanged in this home (delete .tongban/licences to make new ones)")
        return
    run_sealed_demo(store, bus, settings, settings.home, sandbox.servers["platform"].url, say=say)


FLOWBACK_SOURCE = SANDBOX_MAPPINGS / "flowback" / "sources" / "mps-files.yaml"
FLOWBACK_BATCH = "MPS-DEMO-0001"


def _flowback_exchange(say, store, bus, settings) -> None:
    """National data flowback (数据回流): the mock ministry drops a batch, tongban routes it by each record's own
    行政区划 to the district sinks and reconciles it. A second demo run drops the same batch again: it is
    recognised and routes nothing twice."""
    import os

    from tongban.flowback import run_flowback_source

    from .district_sinks import DistrictSinkWorld
    from .ministry import make_batch, write_batch

    os.environ["TONGBAN_HOME"] = str(settings.home)  # the source and sink files name folders under it
    sinks = DistrictSinkWorld(settings.home / "flowback-drop").start()
    os.environ["TONGBAN_DISTRICT_GATEWAY"] = sinks.server.url
    try:
        write_batch(settings.home / "ministry-drop" / "incoming", make_batch(FLOWBACK_BATCH, 400, seed=5), "xml")
        report = run_flowback_source(FLOWBACK_SOURCE, store=store, bus=bus)
    finally:
        sinks.stop()
    for outcome in report.batches:
        if outcome.duplicate:
            say(f"flowback: batch {outcome.batch_id} received again — recognised, nothing routed twice")
            continue
        say(f"flowback: batch {outcome.batch_id}: {outcome.records_in} national records → {outcome.routed} routed to "
            f"{len(outcome.per_target)} districts/counties and the city, {outcome.quarantined} quarantined "
            f"(other provinces, no region)")
    delivered = report.delivery.delivered if report.delivery else 0
    say(f"        delivered to district sinks {delivered}; reconciliation "
        f"{'balances' if report.balanced else 'SHOWS GAPS: tongban flowback report'}")


def _summary(say, result: DemoResult, before: dict, after: dict, counts: dict) -> None:
    table = Table(title="demo summary (this run)")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("records fetched", str(result.fetched))
    table.add_row("case events published", str(result.events_published))
    table.add_row("events delivered (receipt recorded)", str(result.delivered))
    table.add_row("duplicates dropped before delivery", str(result.duplicates))
    table.add_row("quarantined records (open, all runs)", str(counts["quarantined"]))
    for reason, n in sorted(counts["by_rule"].items()):
        table.add_row(f"  {reason}", str(n))
    table.add_row("parked deliveries (open)", str(counts["parked"]))
    stats = result.platform_stats
    table.add_row("platform: cases held", str(stats.get("cases")))
    table.add_row("platform: events held", str(stats.get("events")))
    say(table)


def _case_to_trace(store) -> str | None:
    """The delivered case with the most events: its trace shows a whole lifecycle."""
    from sqlalchemy import func, select

    from tongban.store.tables import deliveries

    with store.read() as conn:
        row = conn.execute(select(deliveries.c.case_number, func.count().label("n"))
                           .where(deliveries.c.case_number.is_not(None))  # flowback deliveries carry no 办件编号
                           .group_by(deliveries.c.case_number).order_by(func.count().desc()).limit(1)).first()
    return row.case_number if row else None
