"""File-drop source adapter (kind "files"): a department drops export files into a directory.

Settings (the `source:` section of a mapping file):

    kind: files
    directory: /data/drop/wsjkw          # the inbox; processing/, done/ and failed/ are made beside the files
                                         # or sftp://user@host:port/path (see adapters/sftp.py for its settings)
    pattern: "*.csv"                     # glob inside the inbox
    format: csv | xml | jsonl | xlsx     # default: from the file suffix
    encoding: auto                       # utf-8, utf-8-sig, gbk, gb18030 or auto (BOM/UTF-8, else GB18030)
    csv: {delimiter: ",", fieldnames: [...], header: true}
    xml_record_tag: Case                 # XML: the element that holds one record
    sheet: 办件                          # XLSX: default the first sheet
    stable_seconds: 30                   # ignore files modified more recently (still being written)
    ready_marker: .ok                    # optional: only take `x.csv` once `x.csv.ok` (or `x.ok`) exists
    max_field_bytes: 65536
    max_xml_bytes: 4294967296
    reclaim_after_seconds: 3600          # files left in processing/ by a crashed run go back to the inbox

Progress is the file moves (no watermark): a file is claimed by an atomic rename into processing/; `commit()`
moves the claimed files to done/, `abort()` puts them back into the inbox for the next run. A file that
cannot be read at all goes to failed/ with `<name>.reason.txt`; it yields nothing and raises nothing
(see `failed_files`). A damaged record inside a readable file is yielded with `error=` set.

The file operations go through an `Inbox` (adapters/inbox.py): a local folder, or an SFTP folder with the
same semantics (remote rename into processing/, the file downloaded to a temporary file under TONGBAN_HOME
while it is read).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from adapters.base import Adapter, RawRecord, SourceError, TransientSourceError
from adapters.formats import FileUnreadable, ReadOptions, reader_for
from adapters.inbox import DONE, FAILED, INBOX, PROCESSING, Entry, open_inbox
from adapters.formats.text import SUPPORTED as SUPPORTED_ENCODINGS

log = logging.getLogger(__name__)

FORMATS = ("csv", "xml", "jsonl", "xlsx")
_SUFFIX_FORMATS = {".csv": "csv", ".txt": "csv", ".xml": "xml", ".jsonl": "jsonl", ".ndjson": "jsonl", ".xlsx": "xlsx"}


class FileDropAdapter(Adapter):
    kind = "files"

    def __init__(self, system: str, settings: dict[str, Any], **seams: Any):
        super().__init__(system, settings, **seams)
        if not settings.get("directory"):
            raise SourceError(system, "source setting 'directory' is required")
        self.inbox = open_inbox(system, settings)
        self.pattern = settings.get("pattern", "*")
        self.format = settings.get("format")
        self.stable_seconds = float(settings.get("stable_seconds", 30))
        marker = settings.get("ready_marker")
        self.ready_marker = ("" if not marker or marker.startswith(".") else ".") + marker if marker else None
        self.reclaim_after = float(settings.get("reclaim_after_seconds", 3600))
        self.options = ReadOptions(
            encoding=settings.get("encoding", "utf-8"),
            max_field_bytes=int(settings.get("max_field_bytes", 64 * 1024)),
            csv=dict(settings.get("csv") or {}),
            xml_record_tag=settings.get("xml_record_tag"),
            max_xml_bytes=int(settings.get("max_xml_bytes", 4 * 1024 ** 3)),
            sheet=settings.get("sheet"),
        )
        # Configuration mistakes are the operator's to fix: raise now rather than fail every file into failed/.
        if self.options.encoding.lower().replace("_", "-") not in SUPPORTED_ENCODINGS:
            raise SourceError(system, f"encoding {self.options.encoding!r} is not supported "
                                      f"(use one of {', '.join(SUPPORTED_ENCODINGS)})")
        if self.format and self.format not in FORMATS:
            raise SourceError(system, f"format {self.format!r} is not supported (use one of {', '.join(FORMATS)})")
        self._clock = seams.get("clock", time.time)
        self.claimed: list[tuple[str, str, str | None]] = []    # (name in processing/, original name, marker)
        self.failed_files: list[tuple[str, str]] = []          # (file name, reason)
        self.waiting_files: list[str] = []                      # seen but not ready (unstable or no marker)

    # --- selection and claiming --------------------------------------------------------------
    def _marker_for(self, name: str) -> str | None:
        if not self.ready_marker:
            return None
        for candidate in (name + self.ready_marker, PurePosixPath(name).with_suffix(self.ready_marker).name):
            if self.inbox.has(INBOX, candidate):
                return candidate
        return None

    def _ready(self) -> list[Entry]:
        now = self._clock()
        ready = []
        for entry in self.inbox.scan(self.pattern):
            if self.ready_marker and entry.name.endswith(self.ready_marker):
                continue
            if now - entry.mtime < self.stable_seconds:
                self.waiting_files.append(entry.name)
                log.info("%s: %s was modified %.0f s ago; waiting until it is stable", self.system, entry.name,
                         now - entry.mtime)
                continue
            if self.ready_marker and self._marker_for(entry.name) is None:
                self.waiting_files.append(entry.name)
                continue
            ready.append(entry)
        # Oldest export first: events of one case must reach the bus in the order the department wrote them.
        ready.sort(key=lambda entry: (entry.mtime, entry.name))
        return ready

    def _claim(self, seen: Entry) -> str | None:
        now = self.inbox.stat(INBOX, seen.name)
        if now is None:
            return None  # another worker took it
        if (now.size, now.mtime) != (seen.size, seen.mtime):
            self.waiting_files.append(seen.name)  # still growing
            return None
        target = self.inbox.free_name(PROCESSING, seen.name)
        try:
            self.inbox.rename(INBOX, seen.name, PROCESSING, target)  # atomic: exactly one claimant wins
        except (FileNotFoundError, FileExistsError):
            return None
        self.inbox.mark_claimed(PROCESSING, target, now)
        self.claimed.append((target, seen.name, self._marker_for(seen.name)))
        return target

    def _reclaim_stale(self) -> None:
        now = self._clock()
        for entry in self.inbox.files(PROCESSING):
            if entry.claimed_at is not None and now - entry.claimed_at > self.reclaim_after:
                log.warning("%s: %s was left in processing/ by an earlier run; returning it to the inbox",
                            self.system, entry.name)
                self.inbox.rename(PROCESSING, entry.name, INBOX, self.inbox.free_name(INBOX, entry.name))

    # --- reading ------------------------------------------------------------------------------
    def _format_of(self, name: str) -> str:
        if self.format:
            return self.format
        fmt = _SUFFIX_FORMATS.get(Path(name).suffix.lower())
        if fmt is None:
            raise FileUnreadable(f"cannot tell the format of {name}; set `format:` in the source settings")
        return fmt

    def _fail(self, claimed: str, name: str, marker: str | None, reason: str) -> None:
        self.claimed = [c for c in self.claimed if c[0] != claimed]
        target = self.inbox.free_name(FAILED, name)
        self.inbox.rename(PROCESSING, claimed, FAILED, target)
        self.inbox.write_text(FAILED, target + ".reason.txt", reason + "\n")
        if marker is not None and self.inbox.has(INBOX, marker):
            self.inbox.rename(INBOX, marker, FAILED, self.inbox.free_name(FAILED, marker))
        self.failed_files.append((name, reason))
        log.warning("%s: %s cannot be read and was moved to failed/: %s", self.system, name, reason)

    def _records(self, claimed: str, name: str, marker: str | None) -> Iterator[RawRecord]:
        # A local inbox reads the file in place; an SFTP inbox downloads it first (bounded memory, removed after).
        # Download failures raise SourceError/TransientSourceError: the file is not at fault, it stays claimed
        # and goes back on abort.
        with self.inbox.local_copy(PROCESSING, claimed) as path:
            yield from self._read(path, claimed, name, marker)

    def _read(self, path: Path, claimed: str, name: str, marker: str | None) -> Iterator[RawRecord]:
        yielded = 0
        try:
            for location, data, error in reader_for(self._format_of(name))(path, self.options):
                yielded += 1
                yield RawRecord(data=data, position=f"{name} {location}", error=error, meta={"file": name})
        except FileUnreadable as exc:
            if yielded:
                yield RawRecord(data={}, position=f"{name} after record {yielded}", error=str(exc), meta={"file": name})
            else:
                self._fail(claimed, name, marker, str(exc))
        except (OSError, ValueError) as exc:
            if yielded:
                raise SourceError(self.system, f"{name}: read failed after {yielded} records: {exc}") from exc
            self._fail(claimed, name, marker, f"{type(exc).__name__}: {exc}")

    # --- the seam -----------------------------------------------------------------------------
    def fetch(self, watermark: str | None = None) -> Iterator[RawRecord]:
        """Yield the records of every ready file in the inbox (the watermark is not used: moves are the progress)."""
        if not self.inbox.exists():
            raise SourceError(self.system, f"inbox directory {self.inbox.describe()} does not exist")
        self.inbox.prepare()
        self.waiting_files = []
        self._reclaim_stale()
        for entry in self._ready():
            claimed = self._claim(entry)
            if claimed is not None:
                yield from self._records(claimed, entry.name, self.claimed[-1][2])

    def commit(self) -> None:
        for claimed, name, marker in self.claimed:
            self.inbox.rename(PROCESSING, claimed, DONE, self.inbox.free_name(DONE, name))
            if marker is not None and self.inbox.has(INBOX, marker):
                self.inbox.rename(INBOX, marker, DONE, self.inbox.free_name(DONE, marker))
        self.claimed = []

    def abort(self, reason: str) -> None:
        for claimed, name, _marker in self.claimed:
            log.warning("%s: returning %s to the inbox: %s", self.system, name, reason)
            try:
                self.inbox.rename(PROCESSING, claimed, INBOX, self.inbox.free_name(INBOX, name))
            except TransientSourceError as exc:
                # An SFTP server gone away: the file stays in processing/ and `reclaim_after_seconds` returns it.
                # Raising here would hide the failure that made the pipeline abort.
                log.error("%s: could not return %s to the inbox (%s); a later run reclaims it", self.system, name, exc)
        self.claimed = []

    def close(self) -> None:
        """Readers close their files as they finish; claims stay until commit/abort. An SFTP inbox disconnects."""
        self.inbox.close()
