"""What every tongban DAG shares: the timezone, the retry backoff, the failure that must not be retried, and
where the mapping files are. No Airflow import: this is read at DAG parse time and by the CLI."""
from __future__ import annotations

import logging
import re
from pathlib import Path

# The same logger name as before the move into tongban/, so that log configuration keyed on it keeps working.
log = logging.getLogger("tongban.dags")

REPO = Path(__file__).resolve().parents[2]
BACKOFF_MULTIPLIER = 2.0  # each wait doubles, up to max_delay_seconds
DAG_ID_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
TIMEZONE = "Asia/Shanghai"  # schedules are read in Chongqing time
PRESETS_WITHOUT_CRON = {"@once", "@continuous"}


class Permanent(Exception):
    """A failure that a retry cannot fix (broken mapping file, refused credentials): fail the task now."""


def mappings_dir() -> Path:
    """The mapping folder, with the one default every command uses (tongban.settings.default_mappings_dir)."""
    from tongban.settings import default_mappings_dir

    return default_mappings_dir()



def ready_database() -> None:
    """Every task's first step (the DAGs' bootstrapping): in the sandbox the database is upgraded to head, so a
    fresh machine's first run needs no `tongban db upgrade`; in production a database that is not at head fails
    the task without retries (an operator runs `tongban db upgrade`; a retry cannot fix it)."""
    from tongban.settings import SettingsError, load
    from tongban.store import open_store
    from tongban.store.schema import SchemaNotCurrent, prepare_sandbox

    try:
        settings = load()
        prepare_sandbox(settings)
        open_store(settings.db_url)
    except SettingsError as exc:  # a missing secret in production: retrying cannot fix it
        raise Permanent(str(exc)) from None
    except SchemaNotCurrent as exc:
        raise Permanent(f"{exc} — run `tongban db upgrade`") from None
