"""The ops__audit_checkpoint DAG signs the ledger's tree head, hour by hour, and fails — without retry, signing
nothing — once the ledger no longer matches a checkpoint it signed."""
from __future__ import annotations

import pytest

from tests.airflow_harness import _store, airflow, world  # noqa: F401 - airflow and world are fixtures

pytestmark = pytest.mark.airflow


def test_the_audit_dag_signs_checkpoints_and_fails_once_the_ledger_tail_is_cut(world):
    from tongban.audit.checkpoints import list_checkpoints

    assert world.run("ingest__cq-samr-rest")["state"] == "success"
    first = world.run("ops__audit_checkpoint")
    assert first["state"] == "success", first["log"][-2000:]
    head = first["xcom"]["checkpoint"]
    assert head["size"] > 0 and head["checkpoints_verified"] == 0
    assert world.run("ops__audit_checkpoint")["xcom"]["checkpoint"]["checkpoints_verified"] == 1

    store = _store(world.env)
    with store.write() as conn:
        conn.exec_driver_sql("DELETE FROM ledger_events WHERE seq = (SELECT MAX(seq) FROM ledger_events)")
    failed = world.run("ops__audit_checkpoint", retry_delay=1)
    assert failed["state"] == "failed"
    assert failed["tries"]["checkpoint"] == [1, "failed"]  # the finding is not retried
    assert f"checkpoint #1 covers {head['size']} events but the ledger holds {head['size'] - 1}" in failed["log"]
    assert len(list_checkpoints(store)) == 2  # nothing signed over the cut ledger
