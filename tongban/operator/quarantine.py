"""Quarantine (records that broke a rule) and parking (deliveries that kept failing).

Nothing is dropped silently: each entry keeps the record or envelope, the stage and the rule, and can be
listed, counted and replayed. Views mask personal data.

A stored record is bounded (settings `quarantine_max_record_bytes`, TONGBAN_QUARANTINE_MAX_RECORD_BYTES, default
1 MiB): a larger one is kept as `{"truncated": true, "original_bytes": N, "sha256": …, "head": …}` — its first
bytes (up to half the limit), its size and the SHA-256 of its whole JSON text, so it can still be recognised and compared with the
department's copy, while one hostile line can no longer fill the database."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from adapters.names import is_utf8, storable
from tongban.bus.envelope import utcnow
from tongban.store import Store
from tongban.store.at_rest import protect
from tongban.store.tables import parked, quarantine

OPEN = "open"
REPLAYED = "replayed"


@dataclass
class QuarantineEntry:
    system: str
    source_key: str | None
    stage: str  # file | read | mapping | validation | change | state | platform | routing | bus (older runs)
    rule: str
    field: str | None = None
    position: str | None = None
    record: Any = None


_JSON = json.JSONEncoder(ensure_ascii=False, default=str)  # json.dumps's text, the encoder made once (not per record)


def stored_record(record: Any, max_bytes: int | None = None) -> str | None:
    """The JSON text to store for `record`: whole when small enough, else its head with its digest and size."""
    if record is None:
        return None
    text = _JSON.encode(record)
    if not is_utf8(text):  # a lone surrogate (undecodable bytes, a JSON "\udcff"): keep it as an escape
        text = json.dumps(record, ensure_ascii=True, default=str)
    if max_bytes is None:
        from tongban.settings import quarantine_max_record_bytes

        max_bytes = quarantine_max_record_bytes()
    if len(text) * 4 <= max_bytes:
        return text
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    # Half the limit: JSON escaping of the head (quotes, backslashes) can at most double it.
    head = raw[: max(0, max_bytes // 2 - 256)].decode("utf-8", errors="ignore")
    return json.dumps({"truncated": True, "original_bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                       "head": head}, ensure_ascii=False)


# Built once: a batch quarantines thousands of records, and building the statements cost more than running them.
_OPEN_SAME = select(quarantine.c.id).where(
    quarantine.c.system == bindparam("system"), quarantine.c.source_key == bindparam("source_key"),
    quarantine.c.stage == bindparam("stage"), quarantine.c.rule == bindparam("rule"), quarantine.c.status == OPEN)
_INSERT = quarantine.insert()


def _bounded(entry: QuarantineEntry) -> None:
    # Storable (no lone surrogate) and within the columns' widths: a hostile name or key must not fail the write.
    entry.source_key, entry.rule, entry.field, entry.position = (
        None if value is None else storable(value)[:width]
        for value, width in ((entry.source_key, 200), (entry.rule, 4000), (entry.field, 100), (entry.position, 300)))


def _row(entry: QuarantineEntry, at: str) -> dict:
    return dict(at=at, system=entry.system, source_key=entry.source_key, position=entry.position, field=entry.field,
                rule=entry.rule, stage=entry.stage, record=protect(stored_record(entry.record)), status=OPEN)


def add(conn: Connection, entry: QuarantineEntry) -> int | None:
    """Insert unless the same record is already open in quarantine for the same rule (re-runs add nothing)."""
    _bounded(entry)
    if entry.source_key is not None:
        existing = conn.execute(_OPEN_SAME, {"system": entry.system, "source_key": entry.source_key,
                                             "stage": entry.stage, "rule": entry.rule}).scalar()
        if existing:
            return None
    result = conn.execute(_INSERT, _row(entry, utcnow()))
    return result.inserted_primary_key[0]


_INSERT_MANY = quarantine.insert().returning(quarantine.c.id, sort_by_parameter_order=True)
_LOOKUP_SLICE = 500  # source keys per IN (…) look-up: well under every driver's parameter limit


_ROW_COLUMNS = ("at", "system", "source_key", "position", "field", "rule", "stage", "record", "status")
_SQLITE_INSERT = (f"INSERT INTO quarantine ({', '.join(_ROW_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(_ROW_COLUMNS))})")


def _insert(conn: Connection, rows: list[dict]) -> list[int]:
    """Insert `rows`, their ids in the same order. SQLite: one executemany straight to the driver, then the ids read
    back as those above the highest before it — the write transaction holds the database's one write lock (BEGIN
    IMMEDIATE) from its start, so no other writer's rows can be among them, and SQLite gives a new row a rowid above
    every one the table has, in insertion order (SQLAlchemy's INSERT … RETURNING per row cost more than the insert).
    Other databases: INSERT … RETURNING, ordered by SQLAlchemy (concurrent writers share the sequence there)."""
    if conn.dialect.name != "sqlite":
        return conn.execute(_INSERT_MANY, rows).scalars().all()
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        before = cursor.execute("SELECT coalesce(max(id), 0) FROM quarantine").fetchone()[0]
        cursor.executemany(_SQLITE_INSERT, [tuple(row[c] for c in _ROW_COLUMNS) for row in rows])
        ids = [r[0] for r in cursor.execute("SELECT id FROM quarantine WHERE id > ? ORDER BY id", (before,))]
    finally:
        cursor.close()
    if len(ids) != len(rows):  # cannot happen under the write lock; never hand out wrong ids if it did
        raise RuntimeError(f"quarantine insert: {len(rows)} rows written, {len(ids)} new ids found")
    return ids


def add_many(conn: Connection, entries: list[QuarantineEntry]) -> list[tuple[int, bool]]:
    """`add` for many entries with one look-up per 500 keys and one multi-row insert: (entry id, added) per entry,
    in order — added False when the same record was already open for the same rule (its open entry's id is given),
    including an entry repeated earlier in `entries`. A batch quarantines thousands of records."""
    if not entries:
        return []
    for entry in entries:
        _bounded(entry)
    open_ids: dict[tuple, int] = {}
    by_system: dict[str, set[str]] = {}
    for entry in entries:
        if entry.source_key is not None:
            by_system.setdefault(entry.system, set()).add(entry.source_key)
    for system, source_keys in by_system.items():
        wanted = sorted(source_keys)
        for start in range(0, len(wanted), _LOOKUP_SLICE):
            for row in conn.execute(select(quarantine.c.id, quarantine.c.source_key, quarantine.c.stage,
                                           quarantine.c.rule)
                                    .where(quarantine.c.system == system, quarantine.c.status == OPEN,
                                           quarantine.c.source_key.in_(wanted[start:start + _LOOKUP_SLICE]))
                                    .order_by(quarantine.c.id)):
                open_ids.setdefault((system, row.source_key, row.stage, row.rule), row.id)
    at = utcnow()
    fresh: list[tuple[int, tuple | None]] = []  # (index in entries, identity) of the rows to insert
    pending: dict[tuple, int] = {}              # identity → index of its first entry in this call
    out: list[tuple[int, bool] | None] = [None] * len(entries)
    repeats: list[tuple[int, tuple]] = []
    for i, entry in enumerate(entries):
        identity = None if entry.source_key is None else (entry.system, entry.source_key, entry.stage, entry.rule)
        if identity is not None and identity in open_ids:
            out[i] = (open_ids[identity], False)
        elif identity is not None and identity in pending:
            repeats.append((i, identity))
        else:
            if identity is not None:
                pending[identity] = i
            fresh.append((i, identity))
    if fresh:
        ids = _insert(conn, [_row(entries[i], at) for i, _ in fresh])
        for (i, _), new_id in zip(fresh, ids):
            out[i] = (new_id, True)
    for i, identity in repeats:
        out[i] = (out[pending[identity]][0], False)
    return out  # type: ignore[return-value]


_PARKED_OPEN = select(parked.c.id).where(parked.c.case_number == bindparam("case_number"), parked.c.status == OPEN)
_REJECTED_OPEN = select(quarantine.c.id).where(
    quarantine.c.system == bindparam("system"), quarantine.c.source_key == bindparam("source_key"),
    quarantine.c.stage == "platform", quarantine.c.status == OPEN)


def is_blocked(conn: Connection, case_number: str | None, system: str | None, source_key: str | None) -> str | None:
    """Why later events of a case must not overtake an earlier one that is parked or was rejected (asked for every
    delivery: the statements are built once, above)."""
    if case_number:
        hit = conn.execute(_PARKED_OPEN, {"case_number": case_number}).first()
        if hit:
            return f"an earlier event of case {case_number} is parked (#{hit.id})"
    if system and source_key:
        hit = conn.execute(_REJECTED_OPEN, {"system": system, "source_key": source_key}).first()
        if hit:
            return f"an earlier event of this case was rejected by the platform (quarantine #{hit.id})"
    return None


def park(conn: Connection, *, message_id: str, idempotency_key: str, system: str | None, case_number: str | None,
         reason: str, envelope_json: str) -> int:
    result = conn.execute(parked.insert().values(at=utcnow(), message_id=message_id, idempotency_key=idempotency_key,
                                                 system=system, case_number=case_number, reason=reason,
                                                 envelope=protect(envelope_json), status=OPEN))
    return result.inserted_primary_key[0]


def counts(store: Store) -> dict[str, Any]:
    with store.read() as conn:
        # Grouped by stage and field: rule texts name the offending value, which would split the counts.
        by_rule = {f"{stage}: {field or '-'}": n for stage, field, n in conn.execute(
            select(quarantine.c.stage, quarantine.c.field, func.count()).where(quarantine.c.status == OPEN)
            .group_by(quarantine.c.stage, quarantine.c.field))}
        parked_n, oldest_parked = conn.execute(select(func.count(), func.min(parked.c.at))
                                               .where(parked.c.status == OPEN)).one()
        oldest_quarantined = conn.execute(select(func.min(quarantine.c.at)).where(quarantine.c.status == OPEN)).scalar()
    return {"quarantined": sum(by_rule.values()), "by_rule": by_rule, "parked": parked_n or 0,
            "oldest_parked": oldest_parked, "oldest_quarantined": oldest_quarantined}
