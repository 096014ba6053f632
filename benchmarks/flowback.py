"""Flowback routing throughput and memory on 100k- and 1M-record national files, against a bare parse of the
same file in the same run.

    .venv/bin/python benchmarks/flowback.py [--sizes 100000 1000000] [--format xml|csv] [--bus null|local|rabbit]

For each size a sandbox ministry file is written once (not timed), then two child processes read it:
- parse: the bare streaming parse (the files adapter's reader, adapters.formats) yielding each record, nothing else;
- route: tongban's flowback ingest of the repository's source file (mps-files.yaml, pointed at the work directory)
  — the files adapter reads, the batch is digested, deduplicated, mapped, 实施编码 and 行政区划 validated, routed,
  envelopes built, published per district, rejects quarantined, every record row and ledger event written
  (SQLite store in the work directory).
Each child reports records/s and its peak RSS (ru_maxrss), so memory is measured per size, per mode. The rate is
given twice: by wall time, and by the child's CPU time (time.process_time) — on a shared machine the two children
run at different moments under different loads, and CPU seconds are what the load does not change (with the null
bus a route child is single-threaded and barely waits: SQLite commits are its only I/O).
`--bus null` (default) discards publishes so the figure is the router's own cost; `--bus local|rabbit` puts the
real transport in the loop (RabbitMQ's per-message confirms dominate then: see DESIGN.md, ~1.6k msg/s).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_parse(path: Path, fmt: str) -> dict:
    from adapters.formats import ReadOptions, reader_for

    start, cpu = time.perf_counter(), time.process_time()
    count = sum(1 for _ in reader_for(fmt)(path, ReadOptions(encoding="utf-8", xml_record_tag="Record")))
    return {"records": count, "seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu,
            "peak_mb": _peak_mb()}


class NullBus:
    """Accepts and discards publishes (the router's own cost, without a transport)."""

    name = "null"

    def declare(self, work) -> None:
        pass

    def publish(self, work, envelopes) -> None:
        for envelope in envelopes:
            envelope.to_bytes()  # serialising is part of publishing: keep it in the measurement

    def close(self) -> None:
        pass


def child_route(path: Path, fmt: str, workdir: Path, bus_kind: str) -> dict:
    import uuid

    from tongban.flowback.run import ingest_source, load_source
    from tongban.store import open_store
    from tongban.store.schema import migrated

    store = open_store(migrated(f"sqlite:///{workdir}/bench-{uuid.uuid4().hex[:6]}.db"))
    if bus_kind == "null":
        bus = NullBus()
    elif bus_kind == "local":
        from tongban.bus.local import LocalBus

        bus = LocalBus(store)
    else:
        from tongban.bus.rabbit import RabbitBus

        bus = RabbitBus("amqp://guest:guest@127.0.0.1:5672/")
    root = Path(__file__).resolve().parent.parent / "mappings" / "flowback"
    source = workdir / "bench-source.yaml"
    source.write_text((root / "sources" / "mps-files.yaml").read_text(encoding="utf-8")
                      .replace("${TONGBAN_HOME:-.tongban}/ministry-drop/incoming", str(path.parent))
                      .replace("../routing.yaml", str(root / "routing.yaml"))
                      .replace("../district-sinks.yaml", str(root / "district-sinks.yaml")), encoding="utf-8")
    start, cpu = time.perf_counter(), time.process_time()
    report = ingest_source(load_source(source), store=store, bus=bus, prefix=f"bench.flowback.{uuid.uuid4().hex[:6]}")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    (outcome,) = report.batches
    assert outcome.error is None and outcome.digest_ok, outcome
    return {"records": outcome.records_in, "routed": outcome.routed, "quarantined": outcome.quarantined,
            "seconds": seconds, "cpu": cpu, "peak_mb": _peak_mb()}


def run_child(mode: str, path: Path, fmt: str, workdir: Path, bus_kind: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--file", str(path), "--format", fmt,
                          "--workdir", str(workdir), "--bus", bus_kind], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--format", choices=["xml", "csv"], default="xml")
    parser.add_argument("--bus", choices=["null", "local", "rabbit"], default="null")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--child", choices=["parse", "route"])
    parser.add_argument("--file", type=Path)
    args = parser.parse_args()
    if args.child:
        result = (child_parse(args.file, args.format) if args.child == "parse"
                  else child_route(args.file, args.format, args.workdir, args.bus))
        print(json.dumps(result))
        return

    from sandbox.ministry import large_records, write_records

    with tempfile.TemporaryDirectory(prefix="flowback-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        print(f"flowback routing vs bare parse — {args.format.upper()} files, bus={args.bus}")
        print(f"{'records':>9} {'file MB':>8} {'parse rec/s':>12} {'route rec/s':>12} {'ratio':>6} "
              f"{'CPU ratio':>9} {'parse peak MB':>14} {'route peak MB':>14}   (aim: ratio ≥ 0.3, peak flat)")
        for size in args.sizes:
            batch_id = f"MPS-BENCH-{size}"
            drop = workdir / f"drop-{size}"
            write_records(drop, batch_id, large_records(batch_id, size), args.format)
            path = drop / f"{batch_id}.{args.format}"
            size_mb = path.stat().st_size / 1e6  # the route child moves the file to done/
            parse = run_child("parse", path, args.format, workdir, args.bus)
            route = run_child("route", path, args.format, workdir, args.bus)
            parse_rate = parse["records"] / parse["seconds"]
            route_rate = route["records"] / route["seconds"]
            cpu_ratio = parse["cpu"] / route["cpu"]  # same records: the ratio of rates is the inverse of the times
            print(f"{size:>9} {size_mb:>8.0f} {parse_rate:>12,.0f} {route_rate:>12,.0f} "
                  f"{route_rate / parse_rate:>6.3f} {cpu_ratio:>9.3f} {parse['peak_mb']:>14.0f} {route['peak_mb']:>14.0f}"
                  f"   (routed {route['routed']}, quarantined {route['quarantined']})")
            for done in drop.rglob(f"{batch_id}.*"):
                done.unlink()


if __name__ == "__main__":
    main()
