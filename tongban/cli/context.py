"""What a command needs from its surroundings, opened one way: the store named by the settings, and who is acting
(recorded in the ledger beside operator actions)."""
from __future__ import annotations

import getpass


def open_configured_store():
    """The store of `TONGBAN_DB_URL` (or the embedded SQLite default), opened lazily so `--help` stays fast."""
    from tongban.settings import load
    from tongban.store import open_store

    return open_store(load().db_url)


def operator_name(given: str | None) -> str:
    """The operator named on the command line, else the login name; "unknown" where there is none (containers)."""
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
