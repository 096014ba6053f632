"""District sinks: how a district or county receives its flowback records (a REST endpoint or a file drop).

A sink either returns a receipt (dict), or raises `SinkTransient` (worth retrying: timeouts, connection errors,
a status in tongban.retry.TRANSIENT_STATUS, a disk that is full) or `SinkRejected` (the district refused the
record: any other 4xx/5xx; not retried).
Both sinks are idempotent on the envelope's idempotency key: REST sends it as `Idempotency-Key`, the file sink
names the file after it, so a retried or re-delivered record lands once.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx

from tongban.bus.envelope import Envelope
from tongban.retry import is_transient_status, retry_after_seconds

from .config import FileSinkConfig, RestSinkConfig, SinkConfig
from tongban.settings import environment_value
from tongban.tls import client_context

class SinkTransient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class SinkRejected(Exception):
    def __init__(self, status: int | None, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def sink_body(env: Envelope) -> dict:
    """What a district receives: the whole national record, with where it came from and how it was routed."""
    payload = env.payload
    return {"message_id": env.message_id, "idempotency_key": env.idempotency_key, "source": env.source,
            "batch_id": payload["batch_id"], "target": payload["target"], "route": payload.get("route"),
            "record": payload["record"]}


class Sink:
    describe = "sink"

    def deliver(self, env: Envelope) -> dict:
        raise NotImplementedError

    def close(self) -> None:
        pass


class RestSink(Sink):
    def __init__(self, url: str, timeout: float = 10.0, token: str | None = None, client: httpx.Client | None = None):
        self.url, self.describe = url, url
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = client or httpx.Client(timeout=timeout, verify=client_context())

    def deliver(self, env: Envelope) -> dict:
        try:
            response = self.http.post(self.url, json=sink_body(env),
                                      headers={**self.headers, "Idempotency-Key": env.idempotency_key})
        except httpx.HTTPError as exc:
            raise SinkTransient(f"{self.url}: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if is_transient_status(status):
            raise SinkTransient(f"{self.url}: HTTP {status}", retry_after_seconds(response.headers.get("Retry-After")))
        if status == 409:  # the district already has this idempotency key
            return {"status": status, "duplicate_at_sink": True}
        if status >= 400:
            raise SinkRejected(status, f"{self.url}: HTTP {status}: {response.text[:300]}")
        try:
            receipt = response.json()
        except ValueError:
            receipt = {}
        return {"status": status, **(receipt if isinstance(receipt, dict) else {})}

    def close(self) -> None:
        self.http.close()


class FileSink(Sink):
    """One JSON file per record under <directory>/<batch id>/, written to a temporary name and renamed, so a
    district's reader never sees half a file."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.describe = str(self.directory)

    def deliver(self, env: Envelope) -> dict:
        name = hashlib.sha256(env.idempotency_key.encode("utf-8")).hexdigest()[:40] + ".json"
        folder = self.directory / str(env.payload["batch_id"])
        final = folder / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if final.exists():
                return {"file": str(final), "duplicate_at_sink": True}
            temp = folder / f".{name}.{env.message_id}.tmp"
            temp.write_text(json.dumps(sink_body(env), ensure_ascii=False, sort_keys=True), encoding="utf-8")
            os.replace(temp, final)
        except OSError as exc:
            raise SinkTransient(f"{folder}: {exc.strerror or exc}") from None
        return {"file": str(final)}


def build_sink(config: SinkConfig, target: str) -> Sink:
    if isinstance(config, RestSinkConfig):
        token = environment_value(config.token_env) if config.token_env else None
        return RestSink(config.url.replace("{code}", target), config.timeout, token)
    if isinstance(config, FileSinkConfig):
        return FileSink(config.directory.replace("{code}", target))
    raise TypeError(f"unknown sink config {config!r}")
