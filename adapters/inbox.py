"""Where a file-drop source keeps its files: a local folder or an SFTP folder, behind one small interface.

The file-drop adapter (adapters/files.py) decides *what* to do with dropped files (which are ready, claim,
read, done/failed/back); an `Inbox` only knows *how* to list, stat, rename and read them in one place.
Folders are named relative to the inbox: `INBOX` ("") is the drop folder itself, then `PROCESSING`,
`DONE` and `FAILED` beside the files.

`open_inbox(system, settings)` picks the implementation from `directory:` — a path gives `LocalInbox`,
`sftp://user@host:port/path` gives `adapters.sftp.SftpInbox`.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from adapters.base import SourceError

INBOX, PROCESSING, DONE, FAILED = "", "processing", "done", "failed"


@dataclass(frozen=True)
class Entry:
    """One file in an inbox folder.

    `claimed_at` is when the file entered its folder as far as the inbox can tell (local: ctime, which a rename
    updates; SFTP: the access time the claim sets), used to return files a crashed run left in processing/.
    """

    name: str
    size: int
    mtime: float
    claimed_at: float | None = None


class Inbox:
    """The operations the file-drop adapter needs. Renames are atomic and do not overwrite, so that of
    several workers exactly one claims a file; a vanished source raises FileNotFoundError."""

    def __init__(self, system: str):
        self.system = system

    def describe(self, folder: str = INBOX) -> str:
        """Where `folder` is, for messages (never with credentials)."""
        raise NotImplementedError

    def exists(self) -> bool:
        """Is the drop folder there?"""
        raise NotImplementedError

    def prepare(self) -> None:
        """Make processing/, done/ and failed/ when missing."""
        raise NotImplementedError

    def scan(self, pattern: str) -> list[Entry]:
        """Regular files directly in the drop folder whose names match the glob `pattern`."""
        raise NotImplementedError

    def files(self, folder: str) -> list[Entry]:
        """Regular files in `folder` (empty when it does not exist)."""
        raise NotImplementedError

    def stat(self, folder: str, name: str) -> Entry | None:
        raise NotImplementedError

    def has(self, folder: str, name: str) -> bool:
        raise NotImplementedError

    def rename(self, folder: str, name: str, to_folder: str, to_name: str) -> None:
        raise NotImplementedError

    def mark_claimed(self, folder: str, name: str, entry: Entry) -> None:
        """Note the claim time where `files()` can read it back as `claimed_at` (no-op where a rename does)."""

    @contextmanager
    def local_copy(self, folder: str, name: str) -> Iterator[Path]:
        """A local path to read the file from (the file itself, or a temporary download removed afterwards)."""
        raise NotImplementedError
        yield  # pragma: no cover

    def write_text(self, folder: str, name: str, text: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

    def free_name(self, folder: str, name: str) -> str:
        """`name` in `folder`, or `name` with a timestamp when a file of that name is already there
        (departments reuse export names day after day)."""
        if not self.has(folder, name):
            return name
        stem, dot, suffix = name.partition(".")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for n in range(1, 10_000):
            candidate = f"{stem}.{stamp}-{n}{dot}{suffix}"
            if not self.has(folder, candidate):
                return candidate
        raise SourceError(self.system, f"no free name for {name} in {self.describe(folder)}")


class LocalInbox(Inbox):
    """A folder on a local (or mounted) file system."""

    def __init__(self, system: str, root: Path):
        super().__init__(system)
        self.root = root

    def _dir(self, folder: str) -> Path:
        return self.root / folder if folder else self.root

    def describe(self, folder: str = INBOX) -> str:
        return str(self._dir(folder))

    def exists(self) -> bool:
        return self.root.is_dir()

    def prepare(self) -> None:
        for folder in (PROCESSING, DONE, FAILED):
            self._dir(folder).mkdir(exist_ok=True)

    @staticmethod
    def _entry(path: Path) -> Entry | None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None  # taken by another worker between listing and stat
        # A rename updates ctime: for files in processing/ that is the claim time.
        return Entry(path.name, stat.st_size, stat.st_mtime, stat.st_ctime)

    def scan(self, pattern: str) -> list[Entry]:
        found = (self._entry(path) for path in self.root.glob(pattern) if path.is_file())
        return [entry for entry in found if entry is not None]

    def files(self, folder: str) -> list[Entry]:
        directory = self._dir(folder)
        if not directory.is_dir():
            return []
        found = (self._entry(path) for path in directory.iterdir() if path.is_file())
        return [entry for entry in found if entry is not None]

    def stat(self, folder: str, name: str) -> Entry | None:
        return self._entry(self._dir(folder) / name)

    def has(self, folder: str, name: str) -> bool:
        return (self._dir(folder) / name).exists()

    def rename(self, folder: str, name: str, to_folder: str, to_name: str) -> None:
        os.rename(self._dir(folder) / name, self._dir(to_folder) / to_name)  # atomic within one file system

    @contextmanager
    def local_copy(self, folder: str, name: str) -> Iterator[Path]:
        yield self._dir(folder) / name

    def write_text(self, folder: str, name: str, text: str) -> None:
        (self._dir(folder) / name).write_text(text, encoding="utf-8")


def open_inbox(system: str, settings: dict[str, Any]) -> Inbox:
    """The inbox named by `settings["directory"]`: a local path or `sftp://user@host:port/path`."""
    directory = str(settings["directory"])
    if directory.startswith("sftp://"):
        from adapters.sftp import SftpInbox  # asyncssh is imported only by deployments with SFTP drops

        return SftpInbox(system, directory, settings)
    return LocalInbox(system, Path(directory))
