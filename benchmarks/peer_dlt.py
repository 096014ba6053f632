"""REST extraction + mapping: tongban against dlt's `rest_api_source` and a raw httpx loop, in the same run.

    .venv/bin/uv pip install --python .venv/bin/python -e '.[bench]'   # dlt + duckdb, for this benchmark only
    .venv/bin/python benchmarks/peer_dlt.py                            # 50,000 records, best of 3, ~1 minute
    .venv/bin/python benchmarks/peer_dlt.py --records 20000 --repeats 2

One paginated REST source — a mock legacy system in a child process on 127.0.0.1 (a free port), pages of `--size`
records pre-rendered as JSON, `page`/`size` query parameters, `{"data": {"items": [...]}}`, an empty page after the
last — is read three ways, alternating (best of N each, so machine noise hits all three alike):

- tongban: the REST adapter (`adapters.rest`, its bounds and loop guards) → `Mapping.map_record` of a mapping with
  four mapped fields (item code, region through `transform: region`, applicant name required, 证件号码 through
  `transform: identity` with GB 11643 check digit) and its watermark, as `tongban.pipeline.ingest` does per record;
- dlt: `rest_api_source` (page_number paginator, data_selector data.items) with the same per-record work as a `map`
  step → a duckdb destination, tuned as dlt's docs advise for speed: jsonl loader files, no compression;
- raw: an httpx.Client loop over the pages doing the same per-record work, nothing else (no bounds, no guards).

Same per-record work everywhere: the legacy key, the item code, `codes.parse_region`, the applicant name, and
`codes.parse_id_number` of the normalised 证件号码 — the validators of tongban.codes, so the ratios measure what
each engine adds around them. Printed: records/s of each and the ratios tongban/dlt (aim ≥ 1.5) and tongban/raw
(aim ≥ 0.4). Absolute figures move with the load on the machine; the ratios of one run are what count.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tongban import codes  # noqa: E402

REGIONS = ["500101", "500103", "500222", "500112", "500106", "500230"]

MAPPING = """\
system: bench-rest
department: benchmark
source:
  adapter: rest
  base_url: {url}
  path: /api/cases
  pagination: {{style: page, page_param: page, size_param: size, size: {size}}}
  records_path: data.items
record:
  key: ywh
  watermark: gxsj
case:
  item_code: {{path: sxbm}}
  region: {{path: xzqh, transform: region}}
  application:
    applicant_name: {{path: sqrxm, required: true}}
    applicant_id_type: "111"
    applicant_id_number: {{path: zjhm, transform: identity, required: true}}
"""


def make_records(count: int) -> list[dict]:
    out = []
    for i in range(count):
        ident = codes.make_id_number("500103", date(1960 + i % 40, 1 + i % 12, 1 + i % 28), i % 500, "MF"[i % 2])
        out.append({"ywh": f"SB{i:07d}", "sxbm": f"SX-{i % 50:04d}", "xzqh": REGIONS[i % len(REGIONS)],
                    "sqrxm": "张三", "zjlx": "SFZ", "zjhm": ident.lower() if i % 3 == 0 else ident,
                    "lxdh": "13800138000", "sqsj": "2024-03-01 09:30:00", "bjlx": "2", "sbqd": "网上",
                    "slr": "李四", "gxsj": f"2024-03-{1 + i % 28:02d} 09:{i % 60:02d}:00"})
    return out


def work(record: dict) -> dict:
    """The per-record work the dlt and raw paths do: what tongban's mapping does for the same four fields."""
    return {"source_key": str(record["ywh"]).strip(), "item_code": record["sxbm"],
            "region": codes.parse_region(str(record["xzqh"])).county_code,
            "applicant_name": record["sqrxm"] or _missing("sqrxm"),
            "applicant_id_number": codes.parse_id_number(codes.normalise(str(record["zjhm"]))).value,
            "watermark": record["gxsj"]}


def _missing(name: str):
    raise ValueError(f"{name}: required")


# --- the mock legacy system (child process) -----------------------------------------------------------------
def serve(count: int, size: int) -> None:
    records = make_records(count)
    pages = {n + 1: json.dumps({"code": "0000", "data": {"items": records[n * size:(n + 1) * size]}},
                               ensure_ascii=False).encode() for n in range((count + size - 1) // size)}
    empty = json.dumps({"code": "0000", "data": {"items": []}}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 (http.server's name)
            query = parse_qs(urlsplit(self.path).query)
            if int(query.get("size", [size])[0]) != size:
                self.send_error(400, "this mock serves one page size")
                return
            body = pages.get(int(query.get("page", ["1"])[0]), empty)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


# --- the three readers --------------------------------------------------------------------------------------
def run_tongban(url: str, size: int, workdir: Path) -> int:
    from tongban.mapping import load_mapping

    path = workdir / "bench-rest.yaml"
    path.write_text(MAPPING.format(url=url, size=size), encoding="utf-8")
    mapping = load_mapping(path)
    from adapters.rest import RestAdapter

    adapter = RestAdapter(mapping.system, mapping.source)
    count, newest = 0, None
    try:
        for raw in adapter.fetch(None):
            mark = mapping.watermark_of(raw.data)
            if mark and (newest is None or mark > newest):
                newest = mark
            mapping.map_record(raw.data, [])
            count += 1
    finally:
        adapter.close()
    return count


def run_raw(url: str, size: int, workdir: Path) -> int:
    import httpx

    count, page = 0, 1
    with httpx.Client(base_url=url) as client:
        while True:
            items = client.get("/api/cases", params={"page": page, "size": size}).json()["data"]["items"]
            for record in items:
                work(record)
                count += 1
            if len(items) < size:
                return count
            page += 1


def run_dlt(url: str, size: int, workdir: Path) -> int:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source({
        "client": {"base_url": url},
        "resources": [{
            "name": "cases",
            "endpoint": {"path": "api/cases", "params": {"size": size}, "data_selector": "data.items",
                         "paginator": {"type": "page_number", "page_param": "page", "base_page": 1,
                                       "total_path": None, "stop_after_empty_page": True}},
            "processing_steps": [{"map": work}],
        }],
    })
    name = f"bench_{time.time_ns()}"
    pipeline = dlt.pipeline(pipeline_name=name, pipelines_dir=str(workdir / "dlt"), dataset_name="bench",
                            destination=dlt.destinations.duckdb(str(workdir / f"{name}.duckdb")))
    pipeline.run(source, loader_file_format="jsonl")
    return pipeline.last_trace.last_normalize_info.row_counts["cases"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=500, help="records per page")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["tongban", "dlt", "raw"], action="append", help="(profiling) one reader")
    parser.add_argument("--serve", nargs=2, type=int, metavar=("RECORDS", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    if "dlt" in (args.only or ["dlt"]):
        import importlib.util

        if importlib.util.find_spec("dlt") is None or importlib.util.find_spec("duckdb") is None:
            raise SystemExit("dlt and duckdb are a benchmark-only extra: .venv/bin/uv pip install --python "
                             ".venv/bin/python -e '.[bench]'   (or run with --only tongban --only raw)")
    # dlt's tuning for speed (its config is read from its own environment variables): no compression of the
    # intermediate files, quiet progress. Set here so that the numbers are of the tuned peer.
    os.environ.setdefault("NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION", "true")
    os.environ.setdefault("DATA_WRITER__DISABLE_COMPRESSION", "true")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(args.records), str(args.size)],
                              stdout=subprocess.PIPE, text=True)
    workdir = Path(tempfile.mkdtemp(prefix="tongban-peer-"))
    try:
        url = f"http://127.0.0.1:{int(server.stdout.readline())}"
        readers = {"tongban": run_tongban, "dlt": run_dlt, "raw": run_raw}
        chosen = args.only or list(readers)
        best = {name: 0.0 for name in chosen}
        for _ in range(args.repeats):
            for name in chosen:
                start = time.perf_counter()
                got = readers[name](url, args.size, workdir)
                rate = got / (time.perf_counter() - start)
                assert got == args.records, f"{name} read {got} records of {args.records}"
                best[name] = max(best[name], rate)
        print(f"REST extraction + mapping, {args.records:,} records in pages of {args.size} "
              f"(best of {args.repeats}, alternating):")
        for name in chosen:
            print(f"  {name:<8} {best[name]:>10,.0f} rec/s")
        if {"tongban", "dlt", "raw"} <= set(chosen):
            print(f"  tongban / dlt (jsonl, no compression) {best['tongban'] / best['dlt']:.2f}  (aim ≥ 1.5)")
            print(f"  tongban / raw httpx loop              {best['tongban'] / best['raw']:.2f}  (aim ≥ 0.4)")
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
