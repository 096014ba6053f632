"""Adapter throughput as ratios against the bare library, measured in the same run.

    .venv/bin/python benchmarks/adapters.py            # default: ~1 minute
    .venv/bin/python benchmarks/adapters.py --quick    # fewer rows, no 1M-row memory run

- SOAP: SoapAdapter vs raw zeep paging the same sandbox service   (aim ≥ 0.8)
- XML:  FileDropAdapter vs bare lxml iterparse (+ clear) of the same file   (aim ≥ 0.5)
- CSV:  FileDropAdapter vs the csv module over the same GBK file   (aim ≥ 0.5)
- peak RSS of a fresh process reading 100k and 1M-row files (flat = streaming works)

Each pair runs alternately, best of N, so machine noise hits both sides alike.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lxml import etree  # noqa: E402

from adapters.files import FileDropAdapter  # noqa: E402
from sandbox.filedrop import write_large_csv, write_large_xml  # noqa: E402


def best_rate(fn, repeats: int) -> tuple[float, int]:
    best, count = 0.0, 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = fn()
        best = max(best, count / (time.perf_counter() - start))
    return best, count


def compare(name: str, ours, bare, repeats: int, aim: float) -> dict:
    ours_best = bare_best = 0.0
    for _ in range(repeats):  # alternate so that drift affects both
        b, n_bare = best_rate(bare, 1)
        o, n_ours = best_rate(ours, 1)
        bare_best, ours_best = max(bare_best, b), max(ours_best, o)
    assert n_bare == n_ours, f"{name}: adapter read {n_ours} records, baseline {n_bare}"
    ratio = ours_best / bare_best
    print(f"{name:<5} adapter {ours_best:>10,.0f} rec/s   bare {bare_best:>10,.0f} rec/s   ratio {ratio:.2f} "
          f"(aim ≥ {aim})  [{n_ours:,} records]", flush=True)
    return {"name": name, "adapter_rps": ours_best, "bare_rps": bare_best, "ratio": ratio, "records": n_ours}


def file_adapter_counter(path: Path, **settings):
    """Count the records the adapter yields for `path`, leaving the file where it was (abort)."""
    def run() -> int:
        source = FileDropAdapter("bench", {"directory": str(path.parent), "pattern": path.name,
                                           "stable_seconds": 0, **settings})
        count = sum(1 for _ in source.fetch(None))
        source.abort("benchmark")
        return count
    return run


# --- SOAP ---------------------------------------------------------------------------------------------------
def bench_soap(cases: int, repeats: int) -> dict:
    import requests
    import zeep
    from zeep.transports import Transport

    from adapters import safexml
    from adapters.soap import SoapAdapter
    from sandbox.legacy_soap import DEFAULT_PASSWORD, HrssSoapService, start_soap_server

    url, stop = start_soap_server(service=HrssSoapService(seed=3, cases_count=cases, password=DEFAULT_PASSWORD))
    os.environ["BENCH_HRSS_USER"], os.environ["BENCH_HRSS_PASSWORD"] = "hrss", DEFAULT_PASSWORD
    size = 500
    try:
        session = requests.Session()
        session.auth = ("hrss", DEFAULT_PASSWORD)
        client = zeep.Client(url + "?wsdl", transport=Transport(session=session), settings=safexml.zeep_settings())

        def raw() -> int:
            count, page = 0, 1
            while True:
                reply = client.service.QueryCases(PageNo=page, PageSize=size)
                records = reply.Records.Record if reply.Records is not None else []
                count += len(records)
                if len(records) < size:
                    return count
                page += 1

        adapter = SoapAdapter("bench", {
            "wsdl": url + "?wsdl", "operation": "QueryCases", "records_path": "Records.Record",
            "paging": {"page_param": "PageNo", "size_param": "PageSize", "size": size},
            "auth": {"type": "basic", "username_env": "BENCH_HRSS_USER", "password_env": "BENCH_HRSS_PASSWORD"}})

        def ours() -> int:
            return sum(1 for _ in adapter.fetch(None))

        return compare("soap", ours, raw, repeats, 0.8)
    finally:
        stop()


# --- files ----------------------------------------------------------------------------------------------------
def bench_xml(path: Path, repeats: int) -> dict:
    def bare() -> int:
        count = 0
        for _event, element in etree.iterparse(str(path), tag="Case"):
            _record = {child.tag: child.text for child in element}
            count += 1
            element.clear(keep_tail=True)
            while element.getprevious() is not None:
                del element.getparent()[0]
        return count

    return compare("xml", file_adapter_counter(path, format="xml", xml_record_tag="Case"), bare, repeats, 0.5)


def bench_csv(path: Path, repeats: int) -> dict:
    def bare() -> int:
        count = 0
        with open(path, encoding="gbk", newline="") as stream:
            reader = csv.reader(stream)
            header = next(reader)
            for row in reader:
                _record = dict(zip(header, row))
                count += 1
        return count

    return compare("csv", file_adapter_counter(path, format="csv", encoding="gbk"), bare, repeats, 0.5)


# --- memory -----------------------------------------------------------------------------------------------------
def peak_rss_kb() -> int:
    """This process's peak RSS. VmHWM belongs to the process image; ru_maxrss can carry over the parent's
    high-water mark across fork+exec, which would hide what the child itself used."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_child(fmt: str, path: str) -> None:
    """Run in a fresh process: read the file through the adapter, report peak RSS."""
    start_kb = peak_rss_kb()
    settings = {"format": fmt, "encoding": "gbk", "xml_record_tag": "Case"}
    count = file_adapter_counter(Path(path), **settings)()
    peak_kb = peak_rss_kb()
    print(json.dumps({"records": count, "start_mb": start_kb / 1024, "peak_mb": peak_kb / 1024}))


def measure_memory(fmt: str, path: Path) -> dict:
    child = subprocess.run([sys.executable, __file__, "--memory-child", fmt, str(path)],
                           capture_output=True, text=True)
    if child.returncode != 0:
        raise SystemExit(f"memory run for {path.name} failed:\n{child.stderr}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    size_mb = path.stat().st_size / 1024 / 1024
    print(f"{fmt:<5} {result['records']:>9,} rows ({size_mb:,.0f} MB file): peak RSS {result['peak_mb']:.0f} MB "
          f"(process start {result['start_mb']:.0f} MB)", flush=True)
    return {"format": fmt, **result, "file_mb": size_mb}


def main() -> None:
    logging.getLogger("adapters").setLevel(logging.ERROR)  # the benchmark aborts on purpose after every pass
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rows and no 1M-row memory run")
    parser.add_argument("--memory-child", nargs=2, metavar=("FORMAT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return

    rows = 20_000 if args.quick else 100_000
    repeats = 2 if args.quick else 3
    work = Path(tempfile.mkdtemp(prefix="tongban-bench-"))
    try:
        print(f"throughput (best of {repeats}, alternating):")
        bench_soap(2_000 if args.quick else 5_000, repeats)
        csv_dir, xml_dir = work / "csv", work / "xml"
        csv_dir.mkdir(), xml_dir.mkdir()
        csv_path = write_large_csv(csv_dir / "cases.csv", rows)
        xml_path = write_large_xml(xml_dir / "cases.xml", rows)
        bench_xml(xml_path, repeats)
        bench_csv(csv_path, repeats)

        print("\npeak memory (fresh process per file):")
        sizes = [rows] if args.quick else [100_000, 1_000_000]
        for count in sizes:
            for fmt, writer in (("csv", write_large_csv), ("xml", write_large_xml)):
                directory = work / f"mem-{fmt}-{count}"
                directory.mkdir()
                path = writer(directory / f"cases.{fmt}", count)
                measure_memory(fmt, path)
                shutil.rmtree(directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
