"""State on disk is private from the moment it exists: directories 0700, files 0600.

The modes are given at creation (`os.mkdir(mode)`, `os.open(O_CREAT | O_EXCL, mode)`), never set by a chmod
afterwards, so there is no moment in which another local user could open a file holding the ledger, personal
data or a key. What already exists is left as it is (an operator may have chosen its modes on purpose).

SQLite creates its -wal, -shm and -journal files with the mode of the database file, so creating the database
file 0600 before SQLite opens it (`private_sqlite_file`) makes all four private.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("tongban.store")
_warned: set[str] = set()

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | os.PathLike) -> Path:
    """Create `path` (and missing parents) with mode 0700; an existing directory is left alone."""
    path = Path(path)
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)  # the mode is narrowed by the umask only, which never widens it
        except FileExistsError:
            pass  # created meanwhile by another process
    return path


def private_file(path: str | os.PathLike) -> Path:
    """Create an empty `path` with mode 0600 unless it exists (its folder is created 0700)."""
    path = Path(path)
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE))
    except FileExistsError:
        pass
    return path


def write_private(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` as a new 0600 file: written beside it, then renamed over it, so a file that was
    there (whatever its mode) is replaced whole and no reader ever sees half of it."""
    path = Path(path)
    private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def sqlite_path(url: str) -> Path | None:
    """The file behind a sqlite:/// URL, or None (in memory, or not SQLite)."""
    if not url.startswith("sqlite"):
        return None
    _, _, rest = url.partition(":///")
    rest = rest.split("?", 1)[0]
    if not rest or rest == ":memory:" or rest.startswith("file::memory:"):
        return None
    return Path(rest)


def private_sqlite_file(url: str) -> None:
    """Create the SQLite database file of `url` 0600 (in a 0700 folder) before SQLite creates it 0644.
    A database that exists already and that others may read (made by an older tongban) is named in a warning,
    once: changing its mode is the operator's decision."""
    path = sqlite_path(url)
    if path is None:
        return
    existed = path.exists()
    private_file(path)
    if existed and str(path) not in _warned:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            _warned.add(str(path))
            log.warning("%s is readable by other users (mode %04o); `chmod 600 %s*` keeps its ledger and "
                        "personal data private", path, mode, path)
