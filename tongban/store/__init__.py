"""The tongban store: one SQL database (SQLite under TONGBAN_HOME, or PostgreSQL with TONGBAN_DB_URL) for the
ledger, watermarks, case numbers, sent snapshots, quarantine and parking. Its tables come from the migrations in
`migrations/` only (`tongban db upgrade`; `schema.py` says which revision a database is at)."""
from .db import Store, open_store  # noqa: F401
