"""Data at rest against a local attacker: what another user of the machine, or a copied file, can see.

Probes of issue 20 item 2: `tongban.db` was world-readable; messages queued on the embedded bus were plain JSON
with names and 证件号码. After a real run every state file is 0600 and every state directory 0700 — from creation,
whatever the umask — and the queued bodies are ciphertext.
"""
from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from tongban.bus.local import LocalBus
from tongban.bus.topology import cases_work
from tongban.delivery.worker import DeliveryWorker
from tongban.bus.envelope import Envelope
from tongban.pipeline.ingest import run_ingest
from tongban.mapping import load_mapping
from tongban.platform.client import PlatformClient
from tongban.settings import load
from tongban.store import open_store
from tongban.store.files import private_dir, private_file, write_private
from tongban.store.tables import local_queue

SAMR = Path(__file__).resolve().parents[2] / "mappings" / "cq-samr-rest.yaml"
NAME, ID_NUMBER = "欧阳娜娜", "11010519491231002X"


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    """The most careless umask there is: whatever stays private below does so because of how it was created."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_state_is_private_after_a_real_run_even_under_umask_0(sandbox_env, open_umask):
    settings = load()  # TONGBAN_HOME from the sandbox_env fixture, created here
    store = open_store(settings.db_url)
    bus, work = LocalBus(store), cases_work("modes")
    platform = PlatformClient(settings)
    report = run_ingest(load_mapping(SAMR), store=store, bus=bus, platform=platform, work=work)
    assert report.events_published > 0
    stats = DeliveryWorker(store=store, bus=bus, platform=platform, work=work).run(
        stop=threading.Event(), idle_exit=0.5)
    assert stats.delivered > 0

    home = settings.home
    assert _mode(home) == 0o700
    database = home / "tongban.db"
    written = [database] + [Path(f"{database}{suffix}") for suffix in ("-wal", "-shm", "-journal")
                            if Path(f"{database}{suffix}").exists()]
    assert len(written) >= 2  # the database and its WAL at least
    assert {path.name: _mode(path) for path in written} == {path.name: 0o600 for path in written}
    store.dispose()


def test_sandbox_state_is_private(tmp_path, open_umask):
    from sandbox.platform_store import PlatformStore

    from tongban.seal.ca import init_sandbox_ca

    state = private_dir(tmp_path / "home" / "sandbox")
    platform_db = state / "platform.db"
    platform_store = PlatformStore(str(platform_db))
    platform_store.close()
    assert _mode(tmp_path / "home") == _mode(state) == 0o700
    assert _mode(platform_db) == 0o600
    pki = init_sandbox_ca(tmp_path / "certs", [("scjgj", "重庆市市场监督管理局")])
    keys = list((tmp_path / "certs").glob("*.key.pem"))
    assert keys and all(_mode(key) == 0o600 for key in keys)
    assert pki["departments"]["scjgj"].key_path in keys


def test_private_files_keep_what_exists_and_replace_whole(tmp_path, open_umask):
    existing = tmp_path / "chosen"
    existing.mkdir(mode=0o750)
    os.chmod(existing, 0o750)
    assert _mode(private_dir(existing)) == 0o750  # an operator's choice is left alone
    target = tmp_path / "secret.pem"
    target.write_text("old")
    os.chmod(target, 0o644)
    write_private(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o600  # a new file, never the old one widened
    assert _mode(private_file(tmp_path / "a" / "b" / "c.db")) == 0o600
    assert _mode(tmp_path / "a") == _mode(tmp_path / "a" / "b") == 0o700


def test_embedded_bus_rows_on_disk_hold_no_name_and_no_id_number(tmp_path):
    from tongban.store import Store

    store = Store(f"sqlite:///{tmp_path}/tongban.db")
    bus, work = LocalBus(store), cases_work("pii")
    payload = {"source_key": "PII-1", "application": {"applicant_name": NAME, "applicant_id_number": ID_NUMBER}}
    bus.publish(work, [Envelope(kind="case_event", source="cq-samr-rest", idempotency_key="k1", payload=payload)])
    bus.publish_delayed(work, Envelope(kind="case_event", source="cq-samr-rest", idempotency_key="k2",
                                       payload=payload), 0)
    with store.read() as conn:
        bodies = [body for (body,) in conn.execute(select(local_queue.c.body))]
    assert len(bodies) == 2 and all(body.startswith("enc:v1:") for body in bodies)
    on_disk = b"".join(path.read_bytes() for path in tmp_path.glob("tongban.db*"))  # the database and its WAL
    for secret in (NAME.encode("utf-8"), ID_NUMBER.encode("ascii"), ID_NUMBER[:17].encode("ascii")):
        assert secret not in on_disk

    received = []
    stop = threading.Event()

    def handle(delivery):
        received.append(delivery.envelope.payload)
        if len(received) == 2:
            stop.set()

    bus.consume(work, handle, stop=stop, idle_exit=1.0)
    assert received == [payload, payload]  # and the worker still reads them
    assert bus.depth(work.queue) == 0
    store.dispose()


def test_a_message_queued_before_encryption_is_still_delivered(sqlite_store):
    """Rows written by an older tongban (plain JSON) are read as they are, so an upgrade loses nothing."""
    work = cases_work("legacy")
    env = Envelope(kind="case_event", source="s", idempotency_key="k", payload={"source_key": "X"})
    with sqlite_store.write() as conn:
        conn.execute(local_queue.insert().values(queue=work.queue, body=env.to_bytes().decode("utf-8"),
                                                 available_at="2000-01-01T00:00:00+00:00", claims=0))
    bus, got, stop = LocalBus(sqlite_store), [], threading.Event()
    bus.consume(work, lambda d: (got.append(d.envelope.idempotency_key), stop.set()), stop=stop, idle_exit=1.0)
    assert got == ["k"]


def test_a_database_others_can_read_is_named_not_silently_used(tmp_path, caplog):
    from tongban.store import Store

    old = tmp_path / "old.db"
    old.touch()
    os.chmod(old, 0o644)  # as an older tongban left it
    with caplog.at_level("WARNING", logger="tongban.store"):
        Store(f"sqlite:///{old}").dispose()
    assert f"{old} is readable by other users (mode 0644)" in caplog.text
    assert _mode(old) == 0o644  # reported, not changed behind the operator's back
