"""Helpers of the restart tests and the soak (tests/e2e/test_restarts.py, tests/e2e/test_soak.py): restarting the
broker and the database, `tongban worker` processes, case events, and counting what arrived where.

Which services are restarted comes from the environment, defaulting to the machine's shared ones (CI restarts its
own services):
  TONGBAN_TEST_AMQP           the broker's URL (tests/conftest.py; default amqp://guest:guest@127.0.0.1:5672/)
  TONGBAN_TEST_RABBIT_NODE    its node for `rabbitmqctl -n` (default: rabbitmqctl's own default node)
  TONGBAN_TEST_PG             the PostgreSQL URL (tests/support.py; default ...@127.0.0.1:5432/test)
  TONGBAN_TEST_PG_CLUSTER     its cluster for pg_ctlcluster, "15/main" style (default: the first version under
                              /etc/postgresql, cluster main, as .ci/run starts it)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from tests.conftest import AMQP_URL
from tests.support import PG_BASE, stop_processes  # noqa: F401 - the restart tests and the soak call en.stop_processes

TONGBAN = str(Path(sys.executable).with_name("tongban"))
RABBIT_NODE = os.environ.get("TONGBAN_TEST_RABBIT_NODE") or None


def _default_cluster() -> str:
    """The machine's cluster as .ci/run starts it: the first version under /etc/postgresql, cluster main."""
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*") if p.is_dir())
    return f"{versions[0] if versions else '15'}/main"


PG_CLUSTER = os.environ.get("TONGBAN_TEST_PG_CLUSTER") or _default_cluster()


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class Rabbit:
    """The broker the tests restart (stop_app / start_app: the node stays up, the broker inside it stops)."""

    def __init__(self, node: str | None = RABBIT_NODE, url: str = AMQP_URL):
        self.node, self.url = node, url

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = ["rabbitmqctl", *(["-n", self.node] if self.node else []), *args]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)

    @property
    def label(self) -> str:
        return f"RabbitMQ node {self.node or '(rabbitmqctl default)'} at {make_url(self.url).host}:" \
               f"{make_url(self.url).port or 5672}"

    def restart(self, down_for: float = 2.0) -> float:
        """stop_app, `down_for` seconds down, start_app, and wait until it serves again. Seconds it took."""
        started = time.monotonic()
        try:
            self.ctl("stop_app")
            time.sleep(down_for)
        finally:
            self.ensure_running()
        return time.monotonic() - started

    def ensure_running(self) -> None:
        """Start the broker if it is stopped (start_app on a running one does nothing) and wait for it."""
        self.ctl("start_app")
        self.ctl("-q", "await_startup", timeout=300)

    def get_env(self, key: str) -> int | None:
        """An integer setting of the node's `rabbit` application, None if unset (the broker's default applies)."""
        answer = self.ctl("eval", f"application:get_env(rabbit, {key}).").stdout.strip()
        return int(answer[len("{ok,"):-1]) if answer.startswith("{ok,") else None

    def set_env(self, key: str, value: int | None) -> None:
        """Set (None: unset) a setting of the node's `rabbit` application, in the running node only: it lasts
        through stop_app/start_app (the application stays loaded), not through a restart of the node."""
        expression = f"application:unset_env(rabbit, {key})." if value is None else \
            f"application:set_env(rabbit, {key}, {int(value)})."
        self.ctl("eval", expression)


class Postgres:
    """The PostgreSQL cluster the tests restart (pg_ctlcluster, fast shutdown: connections are cut)."""

    def __init__(self, cluster: str = PG_CLUSTER, url: str = PG_BASE):
        self.version, self.name = cluster.split("/", 1)
        parsed = make_url(url)
        self.host, self.port = parsed.host or "127.0.0.1", parsed.port or 5432

    @property
    def label(self) -> str:
        return f"PostgreSQL cluster {self.version}/{self.name} at {self.host}:{self.port}"

    def ready(self) -> bool:
        return subprocess.run(["pg_isready", "-q", "-h", self.host, "-p", str(self.port)], timeout=30).returncode == 0

    def restart(self) -> float:
        started = time.monotonic()
        try:
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, "restart",
                            "-m", "fast"], check=True,
                           capture_output=True, text=True, timeout=120)
        finally:
            self.ensure_running()
        return time.monotonic() - started

    def ensure_running(self) -> None:
        if not self.ready():
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, "start"],
                           capture_output=True, timeout=120)
        wait_until(self.ready, 120, f"{self.label} to accept connections")


def worker_env(*, db_url: str, prefix: str, platform_url: str, home: Path) -> dict[str, str]:
    return {**os.environ, "TONGBAN_DB_URL": db_url, "TONGBAN_BUS": "rabbitmq", "TONGBAN_AMQP_URL": AMQP_URL,
            "TONGBAN_QUEUE_PREFIX": prefix, "TONGBAN_PLATFORM_URL": platform_url, "TONGBAN_HOME": str(home)}


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([TONGBAN, "worker", "--lanes", "8", "--prefetch", "64"], env=env,
                                stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def case_events(platform, cases: int, source: str = "restart-legacy", first: int = 0, stage: str = "evaluated") -> list:
    """`cases` legacy cases numbered by the platform, each published as its whole life up to `stage` (application …
    evaluation, numbered events 1..n): later events of a case go round the ordering gate's wait queue while their
    predecessor is delivered, so the wait queue's dead-lettering is on the path ("applied": one event a case)."""
    from tongban.bus.envelope import KIND_CASE_EVENT, Envelope, idempotency_key
    from tongban.cases.changes import events_between
    from tongban.cases.samples import sample_snapshot

    snapshot = sample_snapshot(stage)
    changes = events_between(None, snapshot)

    def number(i: int) -> str:
        return platform.case_number(source, f"L{i:07d}", snapshot["item_code"])

    with ThreadPoolExecutor(16) as pool:
        numbers = list(pool.map(number, range(first, first + cases)))
    envelopes = []
    for i, case_number in enumerate(numbers, start=first):
        for sequence, (event_type, data, occurred_at) in enumerate(changes, start=1):
            event = {"case_number": case_number, "event": event_type, "sequence": sequence, "source_system": source,
                     "source_key": f"L{i:07d}", "item_code": snapshot["item_code"], "local_item_code": None,
                     "region": snapshot["region"], "occurred_at": occurred_at, "data": data}
            envelopes.append(Envelope(kind=KIND_CASE_EVENT, source=source, correlation=case_number, payload=event,
                                      idempotency_key=idempotency_key(source, f"L{i:07d}#{sequence}", event)))
    return envelopes


def delivered_count(store) -> int:
    from tongban.store.tables import deliveries

    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(deliveries)).scalar()


def platform_keys(platform_db: Path) -> Counter:
    """How many times the mock platform stored each idempotency key (read from its own database)."""
    import sqlite3

    db = sqlite3.connect(f"file:{platform_db}?mode=ro", uri=True, timeout=30)
    try:
        return Counter(key for (key,) in db.execute("SELECT idempotency_key FROM events"))
    finally:
        db.close()


def ledger_delivered_keys(store) -> Counter:
    """How many `delivered` ledger events each idempotency key has."""
    from tongban.store.tables import ledger

    with store.read() as conn:
        rows = conn.execute(select(ledger.c.idempotency_key).where(ledger.c.hop == "delivered"))
        return Counter(key for (key,) in rows)


def exactly_once_report(expected: set[str], platform_db: Path, store) -> dict[str, int]:
    """Lost and doubled, counted at the platform and in the ledger (both must be 0)."""
    at_platform, in_ledger = platform_keys(platform_db), ledger_delivered_keys(store)
    return {
        "expected": len(expected),
        "platform_lost": len(expected - set(at_platform)),
        "platform_doubled": sum(n - 1 for n in at_platform.values() if n > 1),
        "platform_unexpected": len(set(at_platform) - expected),
        "ledger_lost": len(expected - set(in_ledger)),
        "ledger_doubled": sum(n - 1 for n in in_ledger.values() if n > 1),
        "ledger_unexpected": len(set(in_ledger) - expected),
    }


CLEAN = {"platform_lost": 0, "platform_doubled": 0, "platform_unexpected": 0,
         "ledger_lost": 0, "ledger_doubled": 0, "ledger_unexpected": 0}


def clean(report: dict[str, int]) -> bool:
    return {k: v for k, v in report.items() if k != "expected"} == CLEAN


class LegacyIngest:
    """A legacy REST world (sandbox) ingested by `tongban ingest` processes, with an oracle: the same world ingested
    once uninterrupted on the embedded bus in a SQLite home of its own, against the same platform (numbering is
    idempotent, so the events' idempotency keys are the same). `expected` holds those keys."""

    def __init__(self, tmp_path: Path, platform_url: str, *, cases: int, seed: int = 5):
        from sandbox.legacy_rest import create_app
        from sandbox.legacy_world import LegacyWorld
        from sandbox.runner import Server

        world = LegacyWorld(seed=seed, cases=cases, bad_share=0.0)
        world.advance(30)  # every case there, most with several events
        self.tmp_path = tmp_path
        self.server = Server(create_app(world, token="endurance-token"), name="endurance-legacy").start()
        self.mapping = str(Path(__file__).resolve().parents[1] / "mappings" / "cq-samr-rest.yaml")
        self.source_env = {"CQ_SAMR_URL": self.server.url, "CQ_SAMR_TOKEN": "endurance-token",
                           "TONGBAN_PLATFORM_URL": platform_url, "COLUMNS": "200"}
        self.expected: set[str] = set()

    def env(self, base: dict[str, str]) -> dict[str, str]:
        env = {**base, **self.source_env}
        env.pop("TONGBAN_MAPPINGS", None)
        return env

    def run(self, env: dict[str, str]) -> subprocess.CompletedProcess:
        result = subprocess.run([TONGBAN, "ingest", self.mapping], env=env, cwd=self.tmp_path, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def run_reference(self) -> set[str]:
        from tests.schema_at_head import home_at_head
        from tongban.audit import ledger
        from tongban.store import Store

        home = home_at_head(self.tmp_path / "reference")
        self.run(self.env({**os.environ, "TONGBAN_HOME": str(home), "TONGBAN_BUS": "inprocess"}))
        oracle = Store(f"sqlite:///{home}/tongban.db")
        try:
            self.expected = {e["idempotency_key"] for e in ledger.iter_events(oracle, ["published"])}
        finally:
            oracle.dispose()
        return self.expected

    def kill_mid_publish(self, env: dict[str, str], store) -> int:
        """Start an ingest, SIGKILL it once its first chunk is committed ("published" ledger events there), and
        return how many "published" events the ledger held then."""
        before = published_count(store)
        proc = subprocess.Popen([TONGBAN, "ingest", self.mapping], env=env, cwd=self.tmp_path,
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: published_count(store) > before or proc.poll() is not None, 180,
                       "the ingest's first chunk", every=0.02)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return published_count(store) - before

    def stop(self) -> None:
        self.server.stop()


def published_count(store) -> int:
    from sqlalchemy.exc import DBAPIError
    from tongban.store.tables import ledger

    try:
        with store.read() as conn:
            return conn.execute(select(func.count()).select_from(ledger).where(ledger.c.hop == "published")).scalar()
    except DBAPIError:  # the database is restarting
        return 0
