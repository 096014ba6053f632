"""Bundle state (一件事一次办), on the shared metadata: one row per bundle application, one per member.

A member's `state` moves waiting → submitted → accepted → granted | refused, or waiting → cancelled (the bundle ended
before it was submitted), or → failed (its department's system refused the submission itself). Every move is a
conditional UPDATE (`WHERE state = <expected>`), so two workers evaluating one bundle never both make it, and only
the one that did writes its ledger event. The shared application form holds personal data: it is stored encrypted
(tongban.store.at_rest). The tables come from migration 0003 (tongban/store/migrations).
"""
from __future__ import annotations

from sqlalchemy import Column, Index, String, Table, Text

from tongban.store.tables import key_column, timestamp_column, timestamp_columns, metadata

WAITING, SUBMITTED, ACCEPTED, GRANTED, REFUSED, CANCELLED, FAILED = (
    "waiting", "submitted", "accepted", "granted", "refused", "cancelled", "failed")
FINAL = (GRANTED, REFUSED, CANCELLED, FAILED)
OPEN, CONCLUDED = "open", "concluded"

bundle_applications = Table(
    "bundle_applications",
    metadata,
    Column("application_id", String(64), primary_key=True),  # the platform's id of the bundle application
    Column("bundle", String(40), nullable=False),              # the definition's id (mappings/bundles/*.yaml)
    Column("state", String(16), nullable=False),               # open | concluded
    Column("result", String(20)),                              # granted | refused | partly_granted
    Column("form", Text, nullable=False),                      # the shared form, encrypted at rest
    timestamp_column("received_at"),
    # 受理 and 办结 pushed to the platform:
    *timestamp_columns("accepted_pushed_at", "concluded_at", nullable=True),
    Column("note", Text),
)
Index("ix_bundle_applications_state", bundle_applications.c.state)

bundle_members = Table(
    "bundle_members",
    metadata,
    Column("application_id", String(64), primary_key=True),
    Column("member", String(40), primary_key=True),
    key_column("system", nullable=False),             # the department system (its mapping's system:)
    Column("department", String(100), nullable=False),
    Column("item_code", String(40), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reference", String(120), nullable=False),          # tongban's reference, the same on every resubmission
    Column("legacy_key", String(200)),                         # the department system's key of the case it opened
    key_column("case_number"),                         # 办件编号, once the ordinary ingest numbered the case
    # due_at: 承诺时限 from submission (ISO, UTC); warned_at: 预警 raised (once)
    *timestamp_columns("submitted_at", "due_at", "accepted_at", "concluded_at", "warned_at", nullable=True),
    Column("note", Text),
)
Index("ix_bundle_members_system_key", bundle_members.c.system, bundle_members.c.legacy_key)

TABLES = (bundle_applications, bundle_members)

