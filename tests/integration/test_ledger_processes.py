"""Several processes appending to the PostgreSQL ledger at once keep one hash chain: appends take turns on the
ledger's own advisory lock, while their other writes (the embedded bus's queue, watermarks) take no global lock."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TONGBAN = str(Path(sys.executable).with_name("tongban"))
REPO = Path(__file__).resolve().parents[2]
PROCESSES, TRANSACTIONS = 4, 30

APPENDER = """
import sys
from sqlalchemy import delete, select
from tongban.audit import ledger
from tongban.audit.ledger import LedgerEvent
from tongban.store import Store, state
from tongban.store.tables import local_queue

store, n = Store(sys.argv[1]), int(sys.argv[2])
for i in range({transactions}):
    with store.write() as conn:  # a write that appends nothing, then one that does: the pipeline's mix
        conn.execute(local_queue.insert().values(queue=f"q{{n}}", body="{{}}", available_at="0", claims=0))
        state.set_watermark(conn, f"system-{{n}}", str(i))
    with store.write() as conn:
        ledger.append(conn, [LedgerEvent("retried", {{"process": n, "i": i, "part": p}}, system=f"p{{n}}")
                             for p in range(1 + i % 3)])
        conn.execute(delete(local_queue).where(local_queue.c.queue == f"q{{n}}"))
""".format(transactions=TRANSACTIONS)


def test_processes_appending_at_once_keep_one_chain_and_audit_verify_passes(pg_store, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    appenders = [subprocess.Popen([sys.executable, "-c", APPENDER, pg_store.url, str(n)], env=env, cwd=REPO,
                                  stderr=subprocess.PIPE, text=True) for n in range(PROCESSES)]
    for process in appenders:
        _, err = process.communicate(timeout=240)
        assert process.returncode == 0, err

    expected = PROCESSES * sum(1 + i % 3 for i in range(TRANSACTIONS))
    audit = subprocess.run([TONGBAN, "audit", "verify", "--json"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "TONGBAN_DB_URL": pg_store.url, "TONGBAN_HOME": str(tmp_path / "home")})
    assert audit.returncode == 0, audit.stdout + audit.stderr
    report = json.loads(audit.stdout)
    assert report["chain_ok"] is True and report["events"] == expected
