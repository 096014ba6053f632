"""The CLI as a newcomer uses it: the sandbox demo, then trace, status, audit verify — and a hand edit caught."""
from __future__ import annotations

import os
import re

from tests.support import run_tongban, tamper_ledger


def test_demo_trace_audit_and_tamper(tmp_path):
    env = {**os.environ, "TONGBAN_HOME": str(tmp_path / "home"), "TONGBAN_BUS": "inprocess", "COLUMNS": "200"}
    for name in ("TONGBAN_PLATFORM_URL", "CQ_SAMR_URL", "TONGBAN_DB_URL"):
        env.pop(name, None)
    first = run_tongban(["sandbox", "demo", "--cases", "150", "--polls", "2"], env)
    assert "in-process bus" in first.stdout  # the embedded default says which bus it chose
    assert "hash chain verified" in first.stdout
    assert "sealed licences: 4 delivered with verified receipts" in " ".join(first.stdout.split())  # 3 XAdES, 1 SM2
    for reason in ("digest_mismatch", "untrusted_issuer", "expired", "not_yet_valid", "revoked",
                   "bad_seal_structure", "missing"):  # every bad 国密 seal kind is shown refused with its reason
        assert re.search(rf"-sm2-\S+\.der\s+SM2\s+quarantined \({reason}\)", first.stdout), reason
    assert "reconciliation balances" in first.stdout  # national flowback routed to the districts and reconciled
    delivered = int(re.search(r"events delivered \(receipt recorded\)\s*│\s*(\d+)", first.stdout).group(1))
    assert delivered > 0
    assert re.search(r"mapping: application\.applicant_id_number\s*│\s*\d+", first.stdout)  # reason counts shown
    number = re.search(r"trace of one delivered case\s*\((\S+)\)", first.stdout).group(1)

    # A second run continues the same world: new progress is delivered, nothing twice.
    second = run_tongban(["sandbox", "demo", "--cases", "150", "--polls", "1"], env)
    assert "recognised, nothing routed twice" in " ".join(second.stdout.split())
    assert "duplicates dropped before delivery │ 0" in second.stdout.replace("  ", " ") or \
        re.search(r"duplicates dropped before delivery\s*│\s*0", second.stdout)

    trace = run_tongban(["trace", number], env)
    for hop in ("numbered", "published", "delivered", "receipt"):
        assert hop in trace.stdout
    assert not re.search(r"\b\d{17}[\dX]\b", trace.stdout)  # no unmasked 证件号码 in the auditor's view

    status = run_tongban(["status"], env)
    assert "quarantined" in status.stdout and "parked" in status.stdout

    assert "ledger intact" in run_tongban(["audit", "verify"], env).stdout
    seq = tamper_ledger(tmp_path / "home", "SELECT seq FROM ledger_events WHERE hop='delivered' ORDER BY seq LIMIT 1",
                        "UPDATE ledger_events SET detail = '{\"forged\": true}' WHERE seq = ?")
    broken = run_tongban(["audit", "verify"], env, check=False)
    assert broken.returncode == 1
    assert f"event #{seq}" in broken.stderr
