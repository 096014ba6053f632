"""The mock 渝快办 platform in a process of its own, and its ceiling: events per second it takes when pushed straight
to, one event per call or in batch calls (批量推送), with no bus and no ledger (benchmarks/delivery.py)."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def platform_process(db: Path, certs: Path | None = None) -> tuple[subprocess.Popen, str]:
    """The mock platform in a process of its own (as the real one is): its work does not share this process's
    interpreter lock with the publisher and the pollers here. With `certs` (a sandbox CA folder) it signs every
    receipt (JWS, ES256) as the real platform does, so the workers' receipt check is part of what is measured."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = db.with_suffix(".log")  # a file, not a pipe: a full pipe would stall the platform
    with log.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "sandbox.platform", "--port", str(port), "--db", str(db),
                                 *(["--certs", str(certs)] if certs is not None else [])],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the mock platform did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)


def platform_ceiling(bench, events: int, threads: int = 16, *, batch: int = 0) -> float:
    """Events per second pushed straight to the same mock platform from `threads` threads (two workers × 8 lanes),
    no bus, no ledger: how fast the platform itself answers on this machine, the cap every worker count shares.
    `batch` > 1: each thread pushes its share in batch calls of that many events (批量推送)."""
    from tongban.platform.client import PlatformClient

    cases = bench.cases(f"bench-direct{batch}-{bench.run_id}", events)
    # A long timeout: on a loaded machine a batch call of 16 threads can take more than the workers' 5 s, and a
    # timed-out call would end the measurement, not slow it.
    clients = [PlatformClient(bench.platform.settings, timeout=120) for _ in range(threads)]

    elapsed = push_shares(clients, cases, batch)
    for client in clients:
        client.close()
    return events / elapsed


def push_shares(clients: list, cases: list, batch: int = 0) -> float:
    """Seconds to push `cases` ((event, idempotency key) each) from one thread per client, each its share, one
    event a call, or in batch calls of `batch` events when > 1."""
    threads = len(clients)

    def push_share(i: int) -> None:
        share = cases[i::threads]
        if batch > 1:
            for start in range(0, len(share), batch):
                clients[i].push_batch(share[start:start + batch])
            return
        for event, key in share:
            clients[i].push_event(event, key)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(push_share, range(threads)))
    return time.perf_counter() - started
