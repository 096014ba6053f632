"""Doubles and helpers shared by several test files (imported as `tests.support`)."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

from adapters.base import Adapter, RawRecord

REPO = Path(__file__).resolve().parents[1]
AMQP_BASE = os.environ.get("TONGBAN_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
PG_BASE = os.environ.get("TONGBAN_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/test")
TONGBAN = str(Path(sys.executable).with_name("tongban"))  # the venv's console script, as a newcomer runs it


def tamper_ledger(home: Path, pick: str, edit: str) -> int:
    """Edit the ledger of the SQLite store under `home` (TONGBAN_HOME) by hand, as a tamperer would: the event whose
    seq the query `pick` selects is changed by the statement `edit` (its one parameter is that seq). Its seq."""
    import sqlite3

    db = sqlite3.connect(Path(home) / "tongban.db")
    try:
        seq = db.execute(pick).fetchone()[0]
        db.execute(edit, (seq,))
        db.commit()
    finally:
        db.close()
    return seq


def run_tongban(args, env, check: bool = True) -> subprocess.CompletedProcess:
    """`tongban *args` in the repository with `env`; with `check`, a non-zero exit fails naming the output."""
    result = subprocess.run([TONGBAN, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"tongban {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


class ListAdapter(Adapter):
    """A legacy system that is a list of records: what a test wants ingest to see, with positions as references."""

    kind = "records"

    def __init__(self, records, system: str = "cq-samr-rest"):
        super().__init__(system, {})
        self.records = records

    def fetch(self, watermark):
        for i, record in enumerate(self.records):
            yield RawRecord(record, f"#{i + 1}")


def mapping_variant(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    """A copy of a mapping file (with its code tables beside it) where `old` is replaced by `new`."""
    text = source.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {source.name}"
    if not (tmp_path / "tables").exists():
        shutil.copytree(source.parent / "tables", tmp_path / "tables")
    path = tmp_path / source.name
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    """The 1-based number of the first line of `path` holding `needle` (errors must name it)."""
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


@contextlib.contextmanager
def scratch_pg_schema(prefix: str = "t", *, give_up_after: str | None = None) -> Iterator[str]:
    """A schema of one's own on the shared test PostgreSQL (parallel runs keep apart): yields a URL whose
    search_path is that schema, and drops the schema afterwards. With `give_up_after` (e.g. "30s"), a drop still
    waiting for locks then is abandoned, the schema left behind on the scratch database, rather than hang the suite."""
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE, pool_pre_ping=True)  # survives a PostgreSQL restart (tests/e2e/test_restarts.py)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{name}"
    finally:
        try:
            with admin.begin() as conn:
                if give_up_after:
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{give_up_after}'")
                conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        except sa.exc.OperationalError as exc:
            if not give_up_after:
                raise
            print(f"schema {name} left behind: {exc}", file=sys.stderr)
        finally:
            admin.dispose()


@contextlib.contextmanager
def rabbit_vhost(prefix: str = "tongban-test") -> Iterator[str]:
    """A RabbitMQ vhost of one's own (rabbitmqctl add_vhost; deleted afterwards); yields its AMQP URL. Other tests'
    queues are never touched, and a test that force-closes connections (close_vhost_connections) closes only its
    own: the tests running beside it in the parallel run keep theirs."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, capture_output=True, timeout=60)
    try:
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
                       check=True, capture_output=True, timeout=60)
        yield AMQP_BASE.rstrip("/") + "/" + name
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], capture_output=True, timeout=60)


def close_vhost_connections(amqp_url: str, why: str) -> int:
    """Force-close every client connection of the vhost `amqp_url` names, as a broker restart would; how many.
    Each connection is picked by its own vhost (`list_connections pid vhost`) and closed by its pid:
    `close_all_connections --vhost` was seen closing other vhosts' connections too while tests ran beside it."""
    vhost = amqp_url.rstrip("/").rsplit("/", 1)[1]
    listed = subprocess.run(["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "vhost"],
                            check=True, capture_output=True, text=True, timeout=60).stdout
    pids = [pid for pid, _, their_vhost in (line.partition("\t") for line in listed.splitlines())
            if their_vhost.strip() == vhost]
    for pid in pids:  # one that closed meanwhile is no error
        subprocess.run(["rabbitmqctl", "-q", "close_connection", pid.strip(), why], capture_output=True, timeout=60)
    return len(pids)


def stop_processes(processes) -> None:
    """SIGTERM (finish the message in hand), then SIGKILL whatever is still there after a minute. The processes
    were started with start_new_session=True, so the signal reaches each one's whole group."""
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
