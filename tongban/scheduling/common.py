"""What every tongban DAG shares: the timezone, the retry backoff, the failure that must not be retried, where the
mapping files are and how a folder of them becomes plans. No Airflow import: this is read at DAG parse time and by
the CLI (the DAG files' own shared parts are in tongban/scheduling/dag_parts.py)."""
from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

# The same logger name as before the move into tongban/, so that log configuration keyed on it keeps working.
log = logging.getLogger("tongban.dags")

REPO = Path(__file__).resolve().parents[2]
BACKOFF_MULTIPLIER = 2.0  # each wait doubles, up to max_delay_seconds
DAG_ID_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
TIMEZONE = "Asia/Shanghai"  # schedules are read in Chongqing time
PRESETS_WITHOUT_CRON = {"@once", "@continuous"}


P = TypeVar("P")


class Permanent(Exception):
    """A failure that a retry cannot fix (broken mapping file, refused credentials): fail the task now."""


def retry_args(retries: int, delay: timedelta, max_delay: timedelta) -> dict[str, Any]:
    """A DAG's default_args for Airflow's retries: `retries` more tries, the wait doubling from `delay` to `max_delay`."""
    return {"retries": retries, "retry_delay": delay, "retry_exponential_backoff": BACKOFF_MULTIPLIER,
            "max_retry_delay": max_delay}


def discover_plans(paths: Iterable[Path], plan_for: Callable[[Path], P], name_of: Callable[[P], str],
                   name_line: Callable[[Path], int | None]) -> tuple[list[P], list]:
    """Every file as a plan, or as the MappingFileError that keeps it from being one (a second file declaring a
    system already declared is one). Never raises for one bad file: a loader bug still names the file."""
    from tongban.mapping import MappingFileError

    plans: list[P] = []
    errors: list[MappingFileError] = []
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            plan = plan_for(path)
        except MappingFileError as exc:
            errors.append(exc)
            continue
        except Exception as exc:  # a bug in a loader must still name the file, not take every DAG down
            errors.append(MappingFileError(str(path), None, f"{type(exc).__name__}: {exc}"))
            continue
        name = name_of(plan)
        if name in seen:
            errors.append(MappingFileError(str(path), name_line(path),
                                           f"system {name!r} is already declared by {seen[name]}"))
            continue
        seen[name] = path
        plans.append(plan)
    return plans, errors


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
