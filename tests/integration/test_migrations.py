"""Schema migrations on the real SQLite and PostgreSQL: `tongban db upgrade` builds exactly the model, `db current`
reports head, downgrade to base empties the database, an older tongban's database is adopted, and the runtime
refuses a database that is not at head with one line naming both revisions and the fix."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tests.support import scratch_pg_schema
from tongban.cli import app
from tongban.store import schema

pytestmark = pytest.mark.schema_unprepared  # these tests meet the runtime's own check, not conftest's shortcut


@pytest.fixture(params=["sqlite", "pg"])
def empty_url(request, tmp_path):
    """An empty database: a new SQLite file, or a PostgreSQL schema of this test's own (parallel runs keep apart)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/new.db"
        return
    with scratch_pg_schema("m") as url:
        yield url


def _db(args, url, monkeypatch):
    monkeypatch.setenv("TONGBAN_DB_URL", url)
    result = CliRunner().invoke(app, ["db", *args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def _differences(url) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), schema.model())
    finally:
        engine.dispose()


def _tables(url) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_builds_the_model_and_current_reports_head(empty_url, monkeypatch):
    code, before = _db(["current"], empty_url, monkeypatch)
    assert code == 1 and before["current"] is None and before["at_head"] is False

    code, upgraded = _db(["upgrade"], empty_url, monkeypatch)
    assert code == 0 and upgraded["before"] is None and upgraded["upgraded"] is True
    assert _differences(empty_url) == []  # every table, column, index and key the code declares, nothing else
    assert set(schema.model().tables) | {"alembic_version"} == _tables(empty_url)

    code, now = _db(["current"], empty_url, monkeypatch)
    assert code == 0 and now["at_head"] is True and now["current"] == now["head"] == ",".join(schema.heads())
    code, again = _db(["upgrade"], empty_url, monkeypatch)
    assert code == 0 and again["upgraded"] is False  # idempotent: a database at head is left alone


def test_downgrade_to_base_empties_the_database_and_upgrade_rebuilds_it(empty_url):
    from alembic import command

    schema.upgrade(empty_url)
    command.downgrade(schema.alembic_config(empty_url), "base")
    assert _tables(empty_url) <= {"alembic_version"}
    schema.upgrade(empty_url)
    assert _differences(empty_url) == []


def test_a_store_on_a_database_not_at_head_is_refused_naming_both_revisions(empty_url):
    from tongban.store import Store

    with pytest.raises(schema.SchemaNotCurrent) as refused:
        Store(empty_url)
    assert "revision: none" in str(refused.value) and f"needs revision {schema.heads()[0]}" in str(refused.value)
    schema.upgrade(empty_url)
    Store(empty_url).dispose()  # at head: opens


def test_a_command_on_a_new_database_says_run_db_upgrade(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    tongban = str(Path(sys.executable).with_name("tongban"))
    env = {**os.environ, "TONGBAN_HOME": str(tmp_path / "home"), "TONGBAN_BUS": "inprocess"}
    env.pop("TONGBAN_DB_URL", None)
    status = subprocess.run([tongban, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 2 and status.stdout == ""
    [line] = [l for l in status.stderr.splitlines() if not l.startswith("tongban: sandbox mode")]
    assert line.startswith("error: the database sqlite:///") and "revision: none" in line
    assert f"needs revision {schema.heads()[0]}" in line and "run `tongban db upgrade`" in line
    assert subprocess.run([tongban, "db", "upgrade"], env=env, capture_output=True, timeout=60).returncode == 0
    assert subprocess.run([tongban, "status"], env=env, capture_output=True, timeout=60).returncode == 0


def _first_flowback_batches() -> sa.Table:
    """flowback_batches as flowback's own ensure_tables first made it, before it gained `problem` and `unreadable`."""
    from tongban.flowback.tables import flowback_batches

    late = ("problem", "unreadable")
    return sa.Table(flowback_batches.name, sa.MetaData(),
                    *(column._copy() for column in flowback_batches.c if column.name not in late))


def test_a_database_an_older_tongban_made_is_adopted_with_its_rows(empty_url):
    """Before migrations, Store() ran create_all and three modules created their own tables on first use: a
    database may hold only some of the tables (an index missing, a table of an earlier shape), and none has an
    alembic_version. The upgrade keeps what is there and adds what is missing."""
    from tongban.flowback.tables import flowback_batches
    from tongban.store.tables import ledger as ledger_table, metadata, watermarks

    engine = sa.create_engine(empty_url)
    metadata.create_all(engine, tables=[ledger_table, watermarks])  # what an old Store() made, before flowback ran
    _first_flowback_batches().create(engine)
    with engine.begin() as conn:
        conn.execute(watermarks.insert().values(system="cq-samr", value="2026-01-01", updated_at="x"))
        conn.execute(sa.text("INSERT INTO flowback_batches (batch_id, source, run_id, received_at, status, "
                             "manifest_count, manifest_digest, records_in, times_received) "
                             "VALUES ('b1', 'national', 'r1', 'x', 'done', 1, 'd', 1, 1)"))
        conn.exec_driver_sql("DROP INDEX ix_ledger_case")
    engine.dispose()

    before, after = schema.upgrade(empty_url)
    assert (before, after) == (None, ",".join(schema.heads()))
    assert _differences(empty_url) == []  # the index and the two late columns are there too
    engine = sa.create_engine(empty_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(watermarks.c.value)).scalar() == "2026-01-01"
        assert conn.execute(sa.select(flowback_batches.c.unreadable)).scalar() == 0
    engine.dispose()


def test_a_database_from_a_newer_tongban_is_refused_as_ahead(empty_url, monkeypatch):
    from tongban.cli.failures import explain
    from tongban.store import Store

    schema.upgrade(empty_url)
    engine = sa.create_engine(empty_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(schema.SchemaNotCurrent) as refused:
        Store(empty_url)
    failure = explain(refused.value)
    assert failure.code == 2 and "9999, which this tongban does not know" in failure.what
    assert "release that upgraded" in failure.todo
    code, current = _db(["current"], empty_url, monkeypatch)
    assert code == 1 and current["ahead"] is True and current["current"] == "9999"
    with pytest.raises(schema.SchemaNotCurrent):  # nothing to migrate from: the upgrade refuses, changing nothing
        schema.upgrade(empty_url)


def test_airflow_tasks_upgrade_the_sandbox_database_and_refuse_a_production_one_without_retries(tmp_path, monkeypatch):
    from tongban.scheduling.common import Permanent, ready_database

    monkeypatch.delenv("TONGBAN_DB_URL", raising=False)
    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "sandbox-home"))
    ready_database()  # the sandbox: upgraded on the spot
    assert "ledger_events" in _tables(f"sqlite:///{tmp_path / 'sandbox-home' / 'tongban.db'}")

    for name, value in {"TONGBAN_ENV": "production", "TONGBAN_HOME": str(tmp_path / "production-home"),
                        "TONGBAN_PLATFORM_URL": "https://ykb.example", "TONGBAN_PLATFORM_SECRET": "s",
                        "TONGBAN_PII_KEY": "k"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(Permanent, match=r"revision: none.*run `tongban db upgrade`"):
        ready_database()
    assert _tables(f"sqlite:///{tmp_path / 'production-home' / 'tongban.db'}") == set()  # nothing created


def test_the_stores_reading_of_the_revisions_agrees_with_alembic():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(schema.alembic_config())
    assert schema.heads() == tuple(sorted(script.get_heads()))
    assert schema.known_revisions() == {rev.revision for rev in script.walk_revisions()}


def test_flowback_record_digests_are_converted_so_a_batch_read_again_finds_what_it_routed(empty_url):
    """Revision 0007 keeps a record's digest as 16 bytes, not 64 hex digits: rows routed before the upgrade are
    converted (else a batch read again after it would route every record once more), and back on downgrade."""
    import hashlib

    from alembic import command

    schema.upgrade(empty_url, "0006")
    full = hashlib.sha256(b'{"ROWGUID":"R1"}').hexdigest()
    engine = sa.create_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO flowback_records (batch_id, digest, run_id, position, outcome) "
                             "VALUES ('B1', :digest, 'r1', 1, 'routed')"), {"digest": full})
    schema.upgrade(empty_url)
    assert _differences(empty_url) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT digest FROM flowback_records")).scalar() == bytes.fromhex(full)[:16]
    command.downgrade(schema.alembic_config(empty_url), "0006")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT digest FROM flowback_records")).scalar() == full[:32]
    engine.dispose()
