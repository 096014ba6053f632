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

