"""Persistence of the mock 渝快办 platform: issued case numbers, case state, stored events and receipts.

SQLite through the standard library: one connection shared by uvicorn's worker threads, serialised by
`lock` (an RLock the platform also holds across a whole check-then-store, so two concurrent deliveries of
the same event cannot both pass the idempotency check). A file path makes a restarted sandbox remember
every case; None keeps everything in memory.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from tongban.cases.statemachine import CaseState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cases (
    case_number   TEXT PRIMARY KEY,
    source_system TEXT NOT NULL,
    source_key    TEXT NOT NULL,
    item_code     TEXT NOT NULL,
    issued_at     TEXT NOT NULL,
    state         TEXT NOT NULL,
    UNIQUE (source_system, source_key)
);
-- Daily sequence per 实施编码 + date; only ever goes up, so a number is never handed out twice.
CREATE TABLE IF NOT EXISTS number_counters (
    prefix TEXT PRIMARY KEY,
    last   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    case_number     TEXT NOT NULL REFERENCES cases (case_number),
    sequence        INTEGER NOT NULL,
    event           TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    digest          TEXT NOT NULL,
    body            TEXT NOT NULL,
    receipt         TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    PRIMARY KEY (case_number, sequence)
);
"""


class PlatformStore:
    def __init__(self, db_path: str | None = None):
        if db_path:
            from tongban.store.files import private_file

            private_file(db_path)  # 0600 before SQLite opens it, so its -wal/-shm are 0600 too
        self.lock = threading.RLock()
        self._db = sqlite3.connect(db_path or ":memory:", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self.lock:
            if db_path:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self.lock:
            self._db.close()

    # ------------------------------------------------------------------ numbering (统一赋码)

    def issue_number(self, source_system: str, source_key: str, item_code: str, day: str, issued_at: str) -> tuple[str, bool]:
        """The case number of (source_system, source_key): the existing one, or a new one (second value True)."""
        with self.lock:
            row = self._db.execute(
                "SELECT case_number FROM cases WHERE source_system = ? AND source_key = ?", (source_system, source_key)
            ).fetchone()
            if row:
                return row["case_number"], False
            prefix = f"{item_code}{day}"
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO number_counters (prefix, last) VALUES (?, 1) "
                    "ON CONFLICT (prefix) DO UPDATE SET last = last + 1",
                    (prefix,),
                )
                last = self._db.execute("SELECT last FROM number_counters WHERE prefix = ?", (prefix,)).fetchone()["last"]
                case_number = f"{prefix}{last:04d}"  # 实施编码 + yyyyMMdd + 4-digit daily sequence
                self._db.execute(
                    "INSERT INTO cases (case_number, source_system, source_key, item_code, issued_at, state) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (case_number, source_system, source_key, item_code, issued_at, json.dumps(CaseState().to_dict())),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return case_number, True

    # ------------------------------------------------------------------ cases and events

    def case(self, case_number: str) -> dict[str, Any] | None:
        with self.lock:
            row = self._db.execute("SELECT * FROM cases WHERE case_number = ?", (case_number,)).fetchone()
        if row is None:
            return None
        case = dict(row)
        case["state"] = CaseState.from_dict(json.loads(case["state"]))
        return case

    def events(self, case_number: str) -> list[dict[str, Any]]:
        with self.lock:
            rows = self._db.execute(
                "SELECT body, receipt, idempotency_key, received_at FROM events WHERE case_number = ? ORDER BY sequence",
                (case_number,),
            ).fetchall()
        out = []
        for row in rows:
            body, receipt = json.loads(row["body"]), json.loads(row["receipt"])
            out.append({
                "sequence": body["sequence"],
                "event": body["event"],
                "occurred_at": body["occurred_at"],
                "data": body["data"],
                "receipt_id": receipt["receipt_id"],
                "idempotency_key": row["idempotency_key"],
                "received_at": row["received_at"],
            })
        return out

    def receipt(self, idempotency_key: str) -> tuple[str, dict[str, Any]] | None:
        """(digest of the stored body, the original receipt) for an idempotency key, or None."""
        with self.lock:
            row = self._db.execute(
                "SELECT digest, receipt FROM events WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
        return (row["digest"], json.loads(row["receipt"])) if row else None

    def store_event(self, event: dict[str, Any], new_state: CaseState, idempotency_key: str, digest: str,
                    receipt: dict[str, Any]) -> None:
        """Store the event, its receipt and the case's new state in one transaction."""
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO events (case_number, sequence, event, idempotency_key, digest, body, receipt, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (event["case_number"], event["sequence"], event["event"], idempotency_key, digest,
                     json.dumps(event, ensure_ascii=False), json.dumps(receipt, ensure_ascii=False), receipt["received_at"]),
                )
                self._db.execute(
                    "UPDATE cases SET state = ? WHERE case_number = ?",
                    (json.dumps(new_state.to_dict()), event["case_number"]),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def stats(self) -> dict[str, Any]:
        """Cases with at least one event, events, cases per 实施编码, events per type."""
        with self.lock:
            by_item = {
                row["item_code"]: row["n"]
                for row in self._db.execute(
                    "SELECT c.item_code, COUNT(*) AS n FROM cases c "
                    "WHERE EXISTS (SELECT 1 FROM events e WHERE e.case_number = c.case_number) "
                    "GROUP BY c.item_code ORDER BY c.item_code"
                )
            }
            by_event = {
                row["event"]: row["n"]
                for row in self._db.execute("SELECT event, COUNT(*) AS n FROM events GROUP BY event ORDER BY event")
            }
            numbers = self._db.execute("SELECT COUNT(*) AS n FROM cases").fetchone()["n"]
        return {
            "cases": sum(by_item.values()),
            "events": sum(by_event.values()),
            "by_item": by_item,
            "by_event": by_event,
            "numbers_issued": numbers,
        }
