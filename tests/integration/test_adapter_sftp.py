"""FileDropAdapter on an SFTP inbox (`directory: sftp://…`), against an asyncssh SFTP server on 127.0.0.1.

The server runs on its own event loop in a background thread, chrooted to a tmp folder, with a host key made
for the test and password (or public-key) login. Files are put into place and aged on the server's folder
directly, the way a department's export job would write them.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import asyncssh
import pytest

import test_conformance  # the files conformance hooks, reused against the SFTP server (module import: no re-collection)
from adapters.base import SourceError, TransientSourceError
from adapters.files import FileDropAdapter
from sandbox.filedrop import HEADER, SYSTEM, DropManifest, write_csv, write_xml

pytestmark = pytest.mark.timeout(60)

USER = "wsjkw"
PASSWORD = "sandbox-sftp-password"
QUICK_RETRY = {"attempts": 2, "initial_wait": 0.01, "max_wait": 0.02}


class ChrootSFTPServer(asyncssh.SFTPServer):
    """Serves one folder as `/` (the department's export area as the adapter would see it)."""

    root: str = ""

    def __init__(self, chan):
        super().__init__(chan, chroot=self.root)


class SandboxSSHServer(asyncssh.SSHServer):
    password = PASSWORD
    client_key: asyncssh.SSHKey | None = None

    def begin_auth(self, username):
        return True

    def password_auth_supported(self):
        return True

    def validate_password(self, username, password):
        return username == USER and password == self.password

    def public_key_auth_supported(self):
        return self.client_key is not None

    def validate_public_key(self, username, key):
        return username == USER and self.client_key is not None and \
            key.public_data == self.client_key.public_data


class SftpTestServer:
    """An SFTP server on 127.0.0.1 (port 0) in a background thread, chrooted to `root`."""

    def __init__(self, root: Path, client_key: asyncssh.SSHKey | None = None):
        self.root = root
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = client_key
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-sftp-server", daemon=True)
        self.acceptor = None

    def start(self) -> "SftpTestServer":
        sftp = type("Sftp", (ChrootSFTPServer,), {"root": str(self.root)})
        ssh = type("Ssh", (SandboxSSHServer,), {"client_key": self.client_key})
        self.thread.start()

        async def listen():
            return await asyncssh.listen("127.0.0.1", 0, server_host_keys=[self.host_key], server_factory=ssh,
                                         sftp_factory=sftp, allow_scp=False)

        self.acceptor = asyncio.run_coroutine_threadsafe(listen(), self.loop).result(10)
        self.port = self.acceptor.get_port()
        return self

    def stop(self) -> None:
        if not self.thread.is_alive():
            return  # already stopped by the test

        async def close():
            self.acceptor.close()
            try:
                # An open client connection can keep wait_closed() waiting; the tests that stop the server
                # mid-session want exactly that connection left hanging, so don't wait long for it.
                await asyncio.wait_for(self.acceptor.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def known_hosts(self, path: Path) -> Path:
        path.write_text(f"[127.0.0.1]:{self.port} " + self.host_key.export_public_key().decode(), encoding="ascii")
        return path


@contextlib.contextmanager
def sftp_drop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SftpTestServer]:
    """A running SFTP server whose root (tmp_path/sftp-root) holds an empty drop/, the password in
    TEST_SFTP_PASSWORD and TONGBAN_HOME in tmp_path/home (where downloads are staged)."""
    root = tmp_path / "sftp-root"
    (root / "drop").mkdir(parents=True)
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TEST_SFTP_PASSWORD", PASSWORD)
    srv = SftpTestServer(root).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def server(tmp_path, monkeypatch):
    with sftp_drop(tmp_path, monkeypatch) as srv:
        yield srv


def settings_for(server: SftpTestServer, tmp_path: Path, **extra) -> dict:
    return {"directory": f"sftp://{USER}@127.0.0.1:{server.port}/drop", "password_env": "TEST_SFTP_PASSWORD",
            "known_hosts": str(server.known_hosts(tmp_path / "known_hosts")), "stable_seconds": 30,
            "retry": QUICK_RETRY, "timeout": 5, **extra}


def adapter(server, tmp_path, **extra) -> FileDropAdapter:
    return FileDropAdapter(SYSTEM, settings_for(server, tmp_path, **extra))


def age(path: Path, seconds: float = 120) -> Path:
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


def finished(path: Path, text: str) -> Path:
    """A small export the department finished writing a while ago."""
    path.write_text(text, encoding="utf-8")
    return age(path)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file()) if directory.exists() else []


def downloads(tmp_path: Path) -> list[str]:
    return names(tmp_path / "home" / "tmp" / "sftp")


# --- reading and moving ------------------------------------------------------------------------------------

def test_gbk_csv_and_xml_are_fetched_and_commit_moves_them_to_done_on_the_server(server, tmp_path):
    drop = server.root / "drop"
    manifest = DropManifest()
    age(write_csv(drop / "cases.csv", seed=3, rows=60, manifest=manifest), 300)
    age(write_xml(drop / "cases.xml", seed=5, rows=80), 200)
    source = adapter(server, tmp_path, encoding="auto", xml_record_tag="Case")
    try:
        records = list(source.fetch(None))
        assert names(drop / "processing") == ["cases.csv", "cases.xml"] and names(drop) == []
        source.commit()
    finally:
        source.close()
    csv_records = [r for r in records if r.meta["file"] == "cases.csv"]
    xml_records = [r for r in records if r.meta["file"] == "cases.xml"]
    assert records[0].meta["file"] == "cases.csv"  # oldest export first
    assert len(csv_records) == 60 and len(xml_records) == 80
    damaged = {r.position for r in csv_records if r.error}
    assert damaged == {f"cases.csv line {n}" for n in manifest.csv_damaged_lines}
    good = [r for r in csv_records if not r.error]
    assert list(good[0].data) == HEADER  # the GBK header decoded
    assert all(r.data["行政区划"].startswith("500") for r in good)
    assert xml_records[-1].position == "cases.xml record 80" and xml_records[0].data["BJBH"]
    assert names(drop / "done") == ["cases.csv", "cases.xml"]
    assert names(drop / "processing") == [] and names(drop) == []
    assert (tmp_path / "home" / "tmp" / "sftp").is_dir() and downloads(tmp_path) == []  # copies went, and are gone


def test_abort_returns_the_files_and_the_next_run_reads_the_same_records(server, tmp_path):
    drop = server.root / "drop"
    age(write_csv(drop / "cases.csv", seed=1, rows=10))
    first = adapter(server, tmp_path, encoding="gbk")
    before = [r.data for r in first.fetch(None)]
    first.abort("broker did not confirm")
    first.close()
    assert names(drop) == ["cases.csv"] and names(drop / "processing") == []
    second = adapter(server, tmp_path, encoding="gbk")
    assert [r.data for r in second.fetch(None)] == before
    second.commit()
    second.close()
    assert names(drop / "done") == ["cases.csv"]


def test_unreadable_file_goes_to_failed_with_its_reason_uploaded(server, tmp_path):
    drop = server.root / "drop"
    age(write_csv(drop / "good.csv", seed=1, rows=5))
    bad = drop / "hostile.xml"
    bad.write_bytes(b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                    b"<Export><Case><BJBH>&x;</BJBH></Case></Export>")
    age(bad)
    source = adapter(server, tmp_path, encoding="gbk", xml_record_tag="Case")
    records = list(source.fetch(None))
    source.commit()
    source.close()
    assert {r.meta["file"] for r in records} == {"good.csv"}
    assert names(drop / "failed") == ["hostile.xml", "hostile.xml.reason.txt"]
    assert "DOCTYPE" in (drop / "failed" / "hostile.xml.reason.txt").read_text(encoding="utf-8")
    assert source.failed_files[0][0] == "hostile.xml"
    assert names(drop / "done") == ["good.csv"]


def test_a_file_still_being_written_is_left_in_the_inbox(server, tmp_path):
    drop = server.root / "drop"
    (drop / "fresh.csv").write_text("办件编号\nWJ1\n", encoding="utf-8")
    finished(drop / "old.csv", "办件编号\nWJ2\n")
    source = adapter(server, tmp_path)
    assert [r.data["办件编号"] for r in source.fetch(None)] == ["WJ2"]
    assert source.waiting_files == ["fresh.csv"]
    source.commit()
    source.close()
    assert names(drop) == ["fresh.csv"] and names(drop / "done") == ["old.csv"]


def test_ready_marker_on_the_server_moves_with_its_file(server, tmp_path):
    drop = server.root / "drop"
    finished(drop / "cases.csv", "办件编号\nWJ1\n")
    source = adapter(server, tmp_path, ready_marker=".ok", pattern="*.csv")
    assert list(source.fetch(None)) == [] and source.waiting_files == ["cases.csv"]
    (drop / "cases.csv.ok").write_text("", encoding="utf-8")
    assert [r.data["办件编号"] for r in source.fetch(None)] == ["WJ1"]
    source.commit()
    source.close()
    assert names(drop / "done") == ["cases.csv", "cases.csv.ok"] and names(drop) == []


def test_a_claim_left_by_a_crashed_run_is_reclaimed_later(server, tmp_path):
    drop = server.root / "drop"
    finished(drop / "cases.csv", "办件编号\nWJ9\n")
    crashed = adapter(server, tmp_path)
    assert len(list(crashed.fetch(None))) == 1
    crashed.close()  # neither commit nor abort: the file stays in processing/
    assert names(drop / "processing") == ["cases.csv"]
    assert list(adapter(server, tmp_path).fetch(None)) == []  # a fresh claim is not taken from its owner
    later = time.time() + 7200
    rescuer = FileDropAdapter(SYSTEM, settings_for(server, tmp_path, reclaim_after_seconds=3600), clock=lambda: later)
    assert [r.data["办件编号"] for r in rescuer.fetch(None)] == ["WJ9"]
    rescuer.close()


# --- credentials, host keys and failures ----------------------------------------------------------------------

def test_private_key_from_the_environment_logs_in(tmp_path, monkeypatch):
    key = asyncssh.generate_private_key("ssh-ed25519")
    root = tmp_path / "sftp-root"
    (root / "drop").mkdir(parents=True)
    finished(root / "drop" / "a.csv", "办件编号\nWJ1\n")
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TEST_SFTP_KEY", key.export_private_key().decode())  # the key text itself
    srv = SftpTestServer(root, client_key=key).start()
    try:
        settings = settings_for(srv, tmp_path, private_key_env="TEST_SFTP_KEY")
        del settings["password_env"]
        source = FileDropAdapter(SYSTEM, settings)
        assert [r.data["办件编号"] for r in source.fetch(None)] == ["WJ1"]
        source.abort("look only")
        source.close()
    finally:
        srv.stop()


def test_wrong_password_is_a_permanent_error_naming_the_variable(server, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_SFTP_PASSWORD", "not-the-password")
    source = adapter(server, tmp_path)
    with pytest.raises(SourceError, match="TEST_SFTP_PASSWORD") as caught:
        list(source.fetch(None))
    source.close()
    assert not isinstance(caught.value, TransientSourceError)  # retrying a refused login does not help
    assert caught.value.system == SYSTEM


def test_unset_password_variable_is_named(server, tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_SFTP_PASSWORD")
    with pytest.raises(SourceError, match="TEST_SFTP_PASSWORD .password_env. is not set"):
        list(adapter(server, tmp_path).fetch(None))


def test_unknown_host_key_is_refused(server, tmp_path):
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    known = tmp_path / "other_known_hosts"
    known.write_text(f"[127.0.0.1]:{server.port} " + stranger.export_public_key().decode(), encoding="ascii")
    source = FileDropAdapter(SYSTEM, {**settings_for(server, tmp_path), "known_hosts": str(known)})
    with pytest.raises(SourceError, match="host key") as caught:
        list(source.fetch(None))
    assert not isinstance(caught.value, TransientSourceError)


def test_server_down_is_transient(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("TEST_SFTP_PASSWORD", PASSWORD)
    source = FileDropAdapter(SYSTEM, {"directory": f"sftp://{USER}@127.0.0.1:{port}/drop",
                                      "password_env": "TEST_SFTP_PASSWORD", "known_hosts": "none",
                                      "insecure_skip_host_check": True, "retry": QUICK_RETRY, "timeout": 2})
    with pytest.raises(TransientSourceError, match="gave up after 2 attempts"):
        list(source.fetch(None))
    source.close()


def test_server_gone_before_abort_leaves_the_claim_for_a_later_run(server, tmp_path):
    drop = server.root / "drop"
    finished(drop / "cases.csv", "办件编号\nWJ1\n")
    source = adapter(server, tmp_path, timeout=1)
    assert len(list(source.fetch(None))) == 1
    server.stop()  # its loop stops too: the open connection hangs, so this also covers an operation timing out
    source.abort("broker did not confirm")  # must not raise over the failure that caused the abort
    source.close()
    assert names(drop / "processing") == ["cases.csv"]  # reclaim_after_seconds returns it later


def test_missing_remote_inbox_is_a_source_error(server, tmp_path):
    settings = {**settings_for(server, tmp_path), "directory": f"sftp://{USER}@127.0.0.1:{server.port}/nope"}
    source = FileDropAdapter(SYSTEM, settings)
    with pytest.raises(SourceError, match="/nope does not exist"):
        list(source.fetch(None))
    source.close()


def test_settings_keep_secrets_out_and_host_checks_on(tmp_path):
    with pytest.raises(SourceError, match="must not hold a password"):
        FileDropAdapter(SYSTEM, {"directory": "sftp://u:secret@127.0.0.1:22/drop", "password_env": "X"})
    with pytest.raises(SourceError, match="insecure_skip_host_check"):
        FileDropAdapter(SYSTEM, {"directory": "sftp://u@127.0.0.1:22/drop", "password_env": "X", "known_hosts": "none"})
    with pytest.raises(SourceError, match="password_env and/or private_key_env"):
        FileDropAdapter(SYSTEM, {"directory": "sftp://u@127.0.0.1:22/drop", "known_hosts": "none",
                                 "insecure_skip_host_check": True})


# --- the adapter conformance kit, on the SFTP server -------------------------------------------------------------

class TestSftpConformance(test_conformance.TestFilesConformance):
    """The files checks with the drop folder served over SFTP (host key check off: a sandbox server)."""

    def start_source(self, workdir):
        settings = super().start_source(workdir)  # writes the exports into workdir/drop
        self.server = SftpTestServer(workdir).start()
        self.monkeypatch.setenv("CONFORMANCE_SFTP_PASSWORD", PASSWORD)
        self.monkeypatch.setenv("TONGBAN_HOME", str(workdir / "home"))
        return {**settings, "directory": f"sftp://{USER}@127.0.0.1:{self.server.port}/drop",
                "password_env": "CONFORMANCE_SFTP_PASSWORD", "known_hosts": "none", "insecure_skip_host_check": True,
                "retry": QUICK_RETRY, "timeout": 5}

    def stop_source(self):
        self.server.stop()
