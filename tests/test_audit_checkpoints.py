"""Signed ledger checkpoints: `tongban audit checkpoint` signs the tree head; `tongban audit verify` then notices a
ledger tail cut off after a checkpoint, an older event rewritten (even with the hash chain recomputed), and a
checkpoint that tongban's audit key did not sign."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tongban import ledger
from tongban.cli import app


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    for name in ("TONGBAN_DB_URL", "TONGBAN_CERTS", "TONGBAN_ENV", "TONGBAN_AUDIT_KEY", "TONGBAN_AUDIT_CERT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def _store():
    from tongban.settings import load
    from tongban.store import open_store

    return open_store(load().db_url)


def _events(store, n, start=0):
    for i in range(start, start + n):
        ledger.record(store, ledger.LedgerEvent("published", {"n": i}, system="cq-test", message_id=f"m{i}",
                                                case_number=f"C{i % 3}"))


def _cli(*args):
    return CliRunner().invoke(app, list(args))


def test_a_checkpoint_is_signed_and_verify_checks_it(home):
    store = _store()
    _events(store, 6)
    taken = _cli("audit", "checkpoint", "--json")
    assert taken.exit_code == 0, taken.output
    head = json.loads(taken.stdout)
    assert head["size"] == 6 and len(head["root"]) == 64 and head["jws"].count(".") == 2
    assert "SANDBOX ONLY" in head["signer"]
    ok = _cli("audit", "verify")
    assert ok.exit_code == 0, ok.output
    assert "1 signed checkpoints verified, the latest covering 6 events" in ok.stdout
    assert json.loads(_cli("audit", "verify", "--json").stdout)["checkpoints"]["ok"] is True


def test_removing_the_last_event_after_a_checkpoint_fails_verify(home):
    store = _store()
    _events(store, 6)
    assert _cli("audit", "checkpoint").exit_code == 0
    with store.write() as conn:
        conn.exec_driver_sql("DELETE FROM ledger_events WHERE seq = (SELECT MAX(seq) FROM ledger_events)")
    assert ledger.verify(store).ok  # the hash chain alone cannot see a cut tail
    result = _cli("audit", "verify")
    assert result.exit_code == 1
    assert "checkpoint #1 covers 6 events but the ledger holds 5" in result.stderr
    assert "event #6" in result.stderr
    assert json.loads(_cli("audit", "verify", "--json").stdout)["checkpoints"]["bad_event_seq"] == 6


def test_rewriting_an_older_event_with_a_recomputed_chain_fails_verify(home):
    from sqlalchemy import select, update

    from tongban.store.tables import ledger as table

    store = _store()
    _events(store, 4)
    assert _cli("audit", "checkpoint").exit_code == 0
    _events(store, 4, start=4)
    assert _cli("audit", "checkpoint").exit_code == 0
    with store.write() as conn:  # a forger who rewrites event 6 and recomputes every later hash
        rows = [dict(r) for r in conn.execute(select(table).order_by(table.c.seq)).mappings()]
        prev = rows[4]["hash"]
        for row in rows[5:]:
            if row["seq"] == 6:
                row["detail"] = json.dumps({"n": "forged"})
            row["prev_hash"] = prev
            row["hash"] = prev = ledger._hash(prev, row)  # noqa: SLF001 - the forger knows the formula
            conn.execute(update(table).where(table.c.seq == row["seq"])
                         .values(detail=row["detail"], prev_hash=row["prev_hash"], hash=row["hash"]))
    assert ledger.verify(store).ok  # the chain checks out: only the signed checkpoint can tell
    result = _cli("audit", "verify")
    assert result.exit_code == 1
    assert "checkpoint #2" in result.stderr and "an event among #5..#8 was rewritten" in result.stderr


def test_a_checkpoint_not_signed_by_the_audit_key_is_refused(home):
    from sqlalchemy import update

    from tongban.audit import jws
    from tongban.audit.tables import checkpoints
    from tongban.seal.ca import load_certificate, load_private_key

    store = _store()
    _events(store, 3)
    assert _cli("audit", "checkpoint").exit_code == 0
    certs = home / "certs"
    row = json.loads(_cli("audit", "checkpoint", "--json").stdout)
    forged = jws.sign({k: row[k] for k in ("kind", "size", "root", "time", "last_seq", "last_event_hash", "previous")},
                      load_private_key(certs / "untrusted-signer.key.pem"),
                      [load_certificate(certs / "untrusted-signer.pem")], typ="x")
    with store.write() as conn:
        conn.execute(update(checkpoints).where(checkpoints.c.id == row["id"]).values(jws=forged))
    result = _cli("audit", "verify")
    assert result.exit_code == 1
    assert f"checkpoint #{row['id']}: signature not accepted: untrusted_issuer" in result.stderr


def test_production_refuses_to_sign_without_an_audit_key(home, monkeypatch):
    monkeypatch.setenv("TONGBAN_ENV", "production")
    monkeypatch.setenv("TONGBAN_PLATFORM_URL", "https://platform.invalid")
    monkeypatch.setenv("TONGBAN_PLATFORM_SECRET", "s3cret-for-this-test")
    monkeypatch.setenv("TONGBAN_PII_KEY", "pii-key-for-this-test")
    result = _cli("audit", "checkpoint")
    assert result.exit_code == 2
    assert "TONGBAN_AUDIT_KEY and TONGBAN_AUDIT_CERT not set" in result.stderr


def test_the_ops_task_signs_then_refuses_a_ledger_that_no_longer_matches(home):
    from tongban.audit.tasks import checkpoint_task
    from tongban.scheduling.common import Permanent

    store = _store()
    _events(store, 5)
    assert checkpoint_task()["size"] == 5
    _events(store, 2, start=5)
    assert checkpoint_task()["checkpoints_verified"] == 1
    with store.write() as conn:
        conn.exec_driver_sql("DELETE FROM ledger_events WHERE seq = (SELECT MAX(seq) FROM ledger_events)")
    with pytest.raises(Permanent, match="checkpoint #2 covers 7 events"):
        checkpoint_task()
