"""Sandbox district sinks: one receiving sink per district/county and one for the city, the way flowback
delivers to them — REST endpoints for the 26 districts and the city, file drops for the 12 counties.

Each REST sink is its own small FastAPI app (its own records, its own fault injection), mounted at
`/districts/<code>/records` on one uvicorn server so the sandbox needs one port, not 27. REST sinks store by
`Idempotency-Key` and answer 409 to a key they already have, as a careful district system would.

    world = DistrictSinkWorld(tmp_path / "sinks").start()
    config = world.sinks_config(retry={"initial_delay": 0.1})   # → tongban.flowback.config.SinksConfig
    world.sink("500101").fail_next(2, 503)                       # fault injection
    world.received("500229")                                      # what a county's file drop holds
    world.stop()
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

from fastapi import FastAPI, Request, Response

from sandbox.runner import Server
from tongban.flowback.config import CITY, TARGETS, SinksConfig


class RestDistrictSink:
    def __init__(self, target: str):
        self.target = target
        self.records: dict[str, dict] = {}  # idempotency key → body
        self.calls = 0
        self._faults: list[int] = []
        self._lock = threading.Lock()
        self.app = FastAPI(title=f"district sink {target}")

        @self.app.post("/records")
        async def receive(request: Request) -> Response:
            with self._lock:
                self.calls += 1
                if self._faults:
                    return Response(status_code=self._faults.pop(0), content="injected fault")
            key = request.headers.get("Idempotency-Key")
            if not key:
                return Response(status_code=400, content="Idempotency-Key header is required")
            body = json.loads(await request.body())
            if body.get("target") != self.target:
                return Response(status_code=422, content=f"record for {body.get('target')} sent to {self.target}")
            with self._lock:
                if key in self.records:
                    return Response(status_code=409, content="already received")
                self.records[key] = body
                receipt_no = len(self.records)
            return Response(json.dumps({"receipt": f"{self.target}-{receipt_no}"}), media_type="application/json")

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._faults.extend([status] * count)

    def heal(self) -> None:
        """Drop the faults still pending."""
        with self._lock:
            self._faults.clear()


def is_rest_target(target: str) -> bool:
    """Districts (5001xx) and the city take REST; counties (5002xx) take file drops."""
    return target == CITY or target.startswith("5001")


class DistrictSinkWorld:
    def __init__(self, base_dir: Path, targets: list[str] | None = None):
        self.base_dir = Path(base_dir)
        self.targets = targets or list(TARGETS)
        self.rest = {t: RestDistrictSink(t) for t in self.targets if is_rest_target(t)}
        self.file_dirs = {t: self.base_dir / t for t in self.targets if not is_rest_target(t)}
        root = FastAPI(title="sandbox district sinks")
        for target, sink in self.rest.items():
            root.mount(f"/districts/{target}", sink.app)
        self.server = Server(root, name="district-sinks")

    def start(self) -> "DistrictSinkWorld":
        for directory in self.file_dirs.values():
            directory.mkdir(parents=True, exist_ok=True)
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def sink(self, target: str) -> RestDistrictSink:
        return self.rest[target]

    def sinks_config(self, retry: dict | None = None) -> SinksConfig:
        targets: dict[str, dict] = {}
        for target in self.rest:
            targets[target] = {"kind": "rest", "url": f"{self.server.url}/districts/{target}/records", "timeout": 5}
        for target, directory in self.file_dirs.items():
            targets[target] = {"kind": "file", "directory": str(directory)}
        return SinksConfig.model_validate({"targets": targets, "retry": retry or {}})

    def received(self, target: str) -> list[dict]:
        """Every record body the target's sink holds (REST: in memory; file drop: the files)."""
        if target in self.rest:
            return list(self.rest[target].records.values())
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.file_dirs[target].rglob("*.json"))]

    def received_by_rowguid(self) -> dict[str, str]:
        """ROWGUID → the target whose sink holds it (a record held twice raises)."""
        out: dict[str, str] = {}
        for target in self.targets:
            for body in self.received(target):
                guid = body["record"]["ROWGUID"]
                if guid in out:
                    raise AssertionError(f"{guid} received by {out[guid]} and {target}")
                out[guid] = target
        return out
