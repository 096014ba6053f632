"""Small reads and writes of pipeline state: watermarks, case numbers, sent snapshots, deliveries.
Functions taking `conn` run inside the caller's transaction."""
from __future__ import annotations

import json
from typing import Any, Iterable

from sqlalchemy import Connection, Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite

from tongban.bus.envelope import utcnow

from .at_rest import protect, reveal
from .tables import case_numbers, case_snapshots, deliveries, watermarks


def dialect_insert(conn: Connection, table: Table):
    """An INSERT that can say ON CONFLICT: writers are not serialised, so a concurrent writer's row is met by the
    database's unique key instead of by a check made before it committed."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def get_watermark(conn: Connection, system: str) -> str | None:
    return conn.execute(select(watermarks.c.value).where(watermarks.c.system == system)).scalar()


def set_watermark(conn: Connection, system: str, value: str) -> None:
    statement = dialect_insert(conn, watermarks).values(system=system, value=value, updated_at=utcnow())
    conn.execute(statement.on_conflict_do_update(index_elements=[watermarks.c.system],
                                                 set_={"value": value, "updated_at": statement.excluded.updated_at}))


def get_case_number(conn: Connection, system: str, source_key: str) -> str | None:
    return conn.execute(select(case_numbers.c.case_number).where(
        case_numbers.c.system == system, case_numbers.c.source_key == source_key)).scalar()


def case_numbers_of(conn: Connection, system: str, source_keys: Iterable[str]) -> dict[str, str]:
    """The stored numbers of those of `source_keys` that have one, in one statement per 500 keys."""
    keys = list(dict.fromkeys(source_keys))
    found: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        rows = conn.execute(select(case_numbers.c.source_key, case_numbers.c.case_number).where(
            case_numbers.c.system == system, case_numbers.c.source_key.in_(keys[start:start + 500])))
        found.update((key, number) for key, number in rows if number)
    return found


def save_case_number(conn: Connection, system: str, source_key: str, number: str, item_code: str | None) -> str:
    """Keep the first number ever assigned (never reassigned); returns the number in force. The insert does nothing
    when the key has a number already (the unique key decides, no read before it): that number is read and kept."""
    inserted = conn.execute(dialect_insert(conn, case_numbers).values(
        system=system, source_key=source_key, case_number=number, item_code=item_code, assigned_at=utcnow())
        .on_conflict_do_nothing(index_elements=[case_numbers.c.system, case_numbers.c.source_key])
        .returning(case_numbers.c.case_number))  # not rowcount: see record_delivery
    return number if inserted.first() is not None else get_case_number(conn, system, source_key)


def source_of_case_number(conn: Connection, number: str) -> tuple[str, str] | None:
    row = conn.execute(select(case_numbers.c.system, case_numbers.c.source_key)
                       .where(case_numbers.c.case_number == number)).first()
    return (row.system, row.source_key) if row else None


def get_snapshot(conn: Connection, system: str, source_key: str) -> tuple[dict | None, int]:
    row = conn.execute(select(case_snapshots.c.snapshot, case_snapshots.c.last_sequence).where(
        case_snapshots.c.system == system, case_snapshots.c.source_key == source_key)).first()
    if row is None:
        return None, 0
    return json.loads(reveal(row.snapshot)), row.last_sequence


def get_snapshots(conn: Connection, system: str, source_keys) -> dict[str, tuple[dict | None, int]]:
    """`get_snapshot` for many keys in one statement: every key given is in the answer ((None, 0): none stored)."""
    keys = list(source_keys)
    found: dict[str, tuple[dict | None, int]] = {key: (None, 0) for key in keys}
    if keys:
        for row in conn.execute(select(case_snapshots.c.source_key, case_snapshots.c.snapshot,
                                       case_snapshots.c.last_sequence).where(
                case_snapshots.c.system == system, case_snapshots.c.source_key.in_(keys))):
            found[row.source_key] = (json.loads(reveal(row.snapshot)), row.last_sequence)
    return found


def save_snapshot(conn: Connection, system: str, source_key: str, snapshot: dict, digest: str, last_sequence: int) -> None:
    values = {"snapshot": protect(json.dumps(snapshot, ensure_ascii=False, sort_keys=True)), "digest": digest,
              "last_sequence": last_sequence, "updated_at": utcnow()}
    conn.execute(dialect_insert(conn, case_snapshots).values(system=system, source_key=source_key, **values)
                 .on_conflict_do_update(index_elements=[case_snapshots.c.system, case_snapshots.c.source_key],
                                        set_=values))


# Asked for every delivery: built once, with bound parameters.
_RECEIPT = select(deliveries.c.receipt).where(deliveries.c.idempotency_key == bindparam("key"))
_LAST_SEQUENCE = select(func.max(deliveries.c.sequence)).where(deliveries.c.case_number == bindparam("case_number"))


def delivered_receipt(conn: Connection, idempotency_key: str) -> dict | None:
    row = conn.execute(_RECEIPT, {"key": idempotency_key}).scalar()
    return json.loads(row) if row else None


def last_delivered_sequence(conn: Connection, case_number: str) -> int:
    return conn.execute(_LAST_SEQUENCE, {"case_number": case_number}).scalar() or 0


_RECORD: dict[str, Any] = {}


def record_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Insert `rows` of `deliveries` (every column but delivered_at; the receipt already JSON text); the keys whose row
    this insert made. A key that was there already — recorded before, by a concurrent transaction (committed, or
    committing: PostgreSQL waits for it), or by an earlier row of `rows` — does nothing: that copy is a duplicate.
    One statement for all rows: SQLAlchemy's "insertmanyvalues" sends them as multi-row INSERTs (1,000 rows each)."""
    statement = _RECORD.get(conn.dialect.name)
    if statement is None:  # built once per dialect (and then cached compiled): building it cost more than running it
        # RETURNING, not rowcount: psycopg reports rowcount -1 for an INSERT … ON CONFLICT DO NOTHING here, which
        # reads as "inserted" and let a concurrent copy record a second delivery.
        statement = _RECORD[conn.dialect.name] = (
            dialect_insert(conn, deliveries).on_conflict_do_nothing(index_elements=[deliveries.c.idempotency_key])
            .returning(deliveries.c.idempotency_key))
    at = utcnow()
    return set(conn.execute(statement, [{**row, "delivered_at": at} for row in rows]).scalars())


def record_delivery(conn: Connection, idempotency_key: str, message_id: str, case_number: str | None,
                    sequence: int | None, receipt: dict[str, Any]) -> bool:
    """False when the key was already recorded (a concurrent duplicate): the caller records a duplicate
    (record_deliveries says how the database's unique key decides, in the caller's transaction)."""
    return bool(record_deliveries(conn, [{
        "idempotency_key": idempotency_key, "message_id": message_id, "case_number": case_number,
        "sequence": sequence, "receipt": json.dumps(receipt, ensure_ascii=False)}]))
