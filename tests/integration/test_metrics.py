"""The worker's Prometheus endpoint exposes what an operator watches."""
from __future__ import annotations

import socket

import httpx

from tongban.operator import quarantine as q
from tongban.delivery.metrics import Metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_endpoint_counts_and_reads_the_store(sqlite_store):
    with sqlite_store.write() as conn:
        q.park(conn, message_id="m", idempotency_key="k", system="s", case_number="C", reason="gave up",
               envelope_json="{}")
    port = _free_port()
    metrics = Metrics.serve(port, store=sqlite_store)
    metrics.count("delivered", 0.02)
    metrics.count("retried")
    body = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert "tongban_delivered_total 1.0" in body and "tongban_retried_total 1.0" in body
    assert "tongban_parked 1.0" in body and "tongban_push_seconds_count 1.0" in body
