"""Where a file-drop source keeps its files: a local folder or an SFTP folder, behind one small interface.

The file-drop adapter (adapters/files.py) decides *what* to do with dropped files (which are ready, claim,
read, done/failed/back); an `Inbox` only knows *how* to list, stat, rename and read them in one place.
Folders are named relative to the inbox: `INBOX` ("") is the drop folder itself, then `PROCESSING`,
`DONE` and `FAILED` beside the files.

`open_inbox(system, settings)` picks the implementation from `directory:` — a path gives `LocalInbox`,
`sftp://user@host:port/path` gives `adapters.sftp.SftpInbox`.
"""
from __future__ import annotations

import errno
import os
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from adapters.base import SourceError
from adapters.names import printable

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
        self.irregular: list[tuple[str, str]] = []  # (name, why): entries the last scan() found but will not offer

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
        """Regular files directly in the drop folder whose names match the glob `pattern`; links and special
        files that match are listed in `irregular` instead (the adapter fails them, unread)."""
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
    """A folder on a local (or mounted) file system, confined to itself.

    The drop folder is writable by the department, so anything in it may be hostile: a symbolic link to
    `/etc/passwd` or to another department's export, a FIFO that blocks a reader forever, a `done` folder that is
    a link elsewhere. Entries are judged by `lstat` (never following a link), only regular files are offered
    (`scan` puts the rest in `irregular`), processing/, done/ and failed/ must be real folders directly under the
    root, every path used resolves under the root, and `open_file` opens with O_NOFOLLOW and checks the opened
    file is still a regular file (a link swapped in after the claim is not read either).
    """

    def __init__(self, system: str, root: Path):
        super().__init__(system)
        # The configured root may itself be a link (an operator's mount point); everything under it may not.
        self.root = Path(os.path.realpath(root))

    def _dir(self, folder: str) -> Path:
        return self.root / folder if folder else self.root

    def _path(self, folder: str, name: str) -> Path:
        if not name or name in (".", "..") or "/" in name or "\x00" in name:
            raise SourceError(self.system, f"refusing the file name {printable(name)!r}: not a plain name")
        path = self._dir(folder) / name
        parent = os.path.realpath(path.parent)
        if parent != str(self._dir(folder)):
            raise SourceError(self.system, f"{printable(folder or '.')}/ resolves outside the drop folder "
                                           f"{printable(str(self.root))}; refusing to use it")
        return path

    def describe(self, folder: str = INBOX) -> str:
        return printable(str(self._dir(folder)))

    def exists(self) -> bool:
        return self.root.is_dir()

    def prepare(self) -> None:
        for folder in (PROCESSING, DONE, FAILED):
            directory = self._dir(folder)
            try:
                directory.mkdir()
            except FileExistsError:
                pass
            if directory.is_symlink() or not stat.S_ISDIR(directory.lstat().st_mode):
                raise SourceError(self.system, f"{self.describe(folder)} is not a folder of the drop folder "
                                               f"(a symbolic link or a file?); tongban never leaves the drop folder")

    @staticmethod
    def _entry(path: Path) -> Entry | None:
        try:
            info = path.lstat()  # never follow a link
        except FileNotFoundError:
            return None  # taken by another worker between listing and stat
        if not stat.S_ISREG(info.st_mode):
            return None
        # A rename updates ctime: for files in processing/ that is the claim time.
        return Entry(path.name, info.st_size, info.st_mtime, info.st_ctime)

    def scan(self, pattern: str) -> list[Entry]:
        self.irregular = []
        found = []
        for path in self.root.glob(pattern):
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(mode):
                continue  # processing/, done/, failed/ or a department's sub-folder: not ours to read
            if stat.S_ISLNK(mode):
                self.irregular.append((path.name, "a symbolic link, not a regular file: tongban never follows "
                                                  "links out of the drop folder, so it was not read"))
            elif not stat.S_ISREG(mode):
                self.irregular.append((path.name, "not a regular file (a FIFO, socket or device): not read"))
            elif (entry := self._entry(path)) is not None:
                found.append(entry)
        return found

    def files(self, folder: str) -> list[Entry]:
        directory = self._dir(folder)
        if directory.is_symlink() or not directory.is_dir():
            return []
        found = (self._entry(path) for path in directory.iterdir())
        return [entry for entry in found if entry is not None]

    def stat(self, folder: str, name: str) -> Entry | None:
        return self._entry(self._path(folder, name))

    def has(self, folder: str, name: str) -> bool:
        return os.path.lexists(self._path(folder, name))  # a dangling link is there too: never rename over it

    def rename(self, folder: str, name: str, to_folder: str, to_name: str) -> None:
        # A rename moves a link itself, never its target; within one file system it is atomic.
        os.rename(self._path(folder, name), self._path(to_folder, to_name))

    @contextmanager
    def local_copy(self, folder: str, name: str) -> Iterator[Path]:
        yield self._path(folder, name)

    def write_text(self, folder: str, name: str, text: str) -> None:
        path = self._path(folder, name)
        # O_EXCL + O_NOFOLLOW: a planted link named like our sidecar is not written through.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)


def open_file(path: Path) -> BinaryIO:
    """Open a file to read without following a link and only if it is a regular file (no FIFO, no device)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotARegularFile("a symbolic link, not a regular file: not read") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFile("not a regular file: not read")
    return os.fdopen(fd, "rb")


class NotARegularFile(OSError):
    """The claimed name is (now) a link or a special file: it is failed, never read."""


def open_inbox(system: str, settings: dict[str, Any]) -> Inbox:
    """The inbox named by `settings["directory"]`: a local path or `sftp://user@host:port/path`."""
    directory = str(settings["directory"])
    if directory.startswith("sftp://"):
        from adapters.sftp import SftpInbox  # asyncssh is imported only by deployments with SFTP drops

        return SftpInbox(system, directory, settings)
    return LocalInbox(system, Path(directory))
