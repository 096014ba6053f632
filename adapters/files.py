"""File-drop source adapter (kind "files"): a department drops export files into a directory.

Settings (the `source:` section of a mapping file; declared in adapters/files_settings.py, which is
`FileDropAdapter.settings_model` — every limit and its default is there):

    adapter: files
    directory: /data/drop/wsjkw          # the inbox; processing/, done/ and failed/ are made beside the files
                                         # or sftp://user@host:port/path (see adapters/sftp.py for its settings)
    pattern: "*.csv"                     # glob inside the inbox
    format: csv | xml | jsonl | xlsx     # default: from the file suffix
    encoding: auto                       # utf-8, utf-8-sig, gbk, gb18030 or auto (BOM/UTF-8, else GB18030)
    csv: {delimiter: ",", fieldnames: [...], header: true}
    record_tag: Case                     # XML: the element that holds one record (older name: xml_record_tag)
    sheet: 办件                          # XLSX: default the first sheet
    stable_seconds: 30                   # ignore files modified more recently (still being written)
    ready_marker: .ok                    # optional: only take `x.csv` once `x.csv.ok` (or `x.ok`) exists
    reclaim_after_seconds: 3600          # files left in processing/ by a crashed run go back to the inbox
    max_row_bytes: 1048576               # limits: max_field_bytes, max_columns, max_json_depth, max_xml_bytes,
                                         # max_xml_record_bytes, max_xlsx_bytes, max_xlsx_rows (files_settings.py)

Confinement: the adapter never follows a link and never leaves the drop folder (adapters/inbox.py). A symbolic
link, FIFO or device matching the pattern goes to failed/ unread, with its reason; a file name that is not valid
UTF-8 goes to failed/ unread too (`failed_files`). Names are escaped (adapters/names.py) in every position,
reason and message, so a newline or an ANSI escape in a name never reaches a terminal or the ledger as such.

Progress is the file moves (no watermark): a file is claimed by an atomic rename into processing/; `commit()`
moves the claimed files to done/, `abort()` puts them back into the inbox for the next run. A file that
cannot be read at all goes to failed/ with `<name>.reason.txt`; it yields nothing and raises nothing
(see `failed_files`, which the pipeline records in quarantine and the ledger). A damaged record inside a readable
file is yielded with `error=` set.

The file operations go through an `Inbox` (adapters/inbox.py): a local folder, or an SFTP folder with the
same semantics (remote rename into processing/, the file downloaded to a temporary file under TONGBAN_HOME
while it is read).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from adapters import files_settings
from adapters.base import Adapter, RawRecord, SourceError, TransientSourceError
from adapters.files_settings import FORMATS, FileDropSettings  # noqa: F401 (FORMATS: kept importable from here)
from adapters.formats import FileUnreadable, ReadOptions, reader_for
from adapters.inbox import DONE, FAILED, INBOX, PROCESSING, Entry, NotARegularFile, open_file, open_inbox
from adapters.names import is_utf8, printable

log = logging.getLogger(__name__)

_SUFFIX_FORMATS = {".csv": "csv", ".txt": "csv", ".xml": "xml", ".jsonl": "jsonl", ".ndjson": "jsonl", ".xlsx": "xlsx"}


class FileDropAdapter(Adapter):
    kind = "files"

    settings_model = FileDropSettings

    def __init__(self, system: str, settings: dict[str, Any], **seams: Any):
        super().__init__(system, settings, **seams)
        # Configuration mistakes are the operator's to fix: raise now rather than fail every file into failed/.
        declared = files_settings.validate(system, settings)
        self.declared = declared
        self.inbox = open_inbox(system, {**settings, "directory": declared.directory})
        self.pattern = declared.pattern
        self.format = declared.format
        self.stable_seconds = declared.stable_seconds
        marker = declared.ready_marker
        self.ready_marker = ("" if not marker or marker.startswith(".") else ".") + marker if marker else None
        self.reclaim_after = declared.reclaim_after_seconds
        self.options = ReadOptions(
            encoding=declared.encoding,
            max_field_bytes=declared.max_field_bytes,
            csv=declared.csv.model_dump(exclude_none=True, exclude_defaults=True) if declared.csv else {},
            xml_record_tag=declared.tag,
            max_xml_bytes=declared.max_xml_bytes,
            max_xml_record_bytes=declared.max_xml_record_bytes,
            sheet=declared.sheet,
            max_row_bytes=declared.max_row_bytes,
            max_columns=declared.max_columns,
            max_json_depth=declared.max_json_depth,
            max_xlsx_bytes=declared.max_xlsx_bytes,
            max_xlsx_rows=declared.max_xlsx_rows,
        )
        self._clock = seams.get("clock", time.time)
        self.claimed: list[tuple[str, str, str | None]] = []    # (name in processing/, original name, marker)
        self.failed_files: list[tuple[str, str]] = []          # (escaped file name, reason), recorded by the pipeline
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
        entries = self.inbox.scan(self.pattern)
        for name, why in self.inbox.irregular:
            self._refuse(name, why)
        for entry in entries:
            if self.ready_marker and entry.name.endswith(self.ready_marker):
                continue
            if now - entry.mtime < self.stable_seconds:
                self.waiting_files.append(printable(entry.name))
                log.info("%s: %s was modified %.0f s ago; waiting until it is stable", self.system,
                         printable(entry.name), now - entry.mtime)
                continue
            if self.ready_marker and self._marker_for(entry.name) is None:
                self.waiting_files.append(printable(entry.name))
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
            self.waiting_files.append(printable(seen.name))  # still growing
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
                            self.system, printable(entry.name))
                self.inbox.rename(PROCESSING, entry.name, INBOX, self.inbox.free_name(INBOX, entry.name))

    # --- reading ------------------------------------------------------------------------------
    def _format_of(self, name: str) -> str:
        if self.format:
            return self.format
        fmt = _SUFFIX_FORMATS.get(Path(name).suffix.lower())
        if fmt is None:
            raise FileUnreadable(f"cannot tell the format of {printable(name)}; set `format:` in the source settings")
        return fmt

    def _fail(self, claimed: str, name: str, marker: str | None, reason: str) -> None:
        self.claimed = [c for c in self.claimed if c[0] != claimed]
        self._to_failed(PROCESSING, claimed, name, reason)
        if marker is not None and self.inbox.has(INBOX, marker):
            self.inbox.rename(INBOX, marker, FAILED, self.inbox.free_name(FAILED, marker))

    def _refuse(self, name: str, reason: str) -> None:
        """A link or special file in the drop folder: moved (the link itself, never its target) to failed/."""
        try:
            self._to_failed(INBOX, name, name, reason)
        except FileNotFoundError:
            pass  # gone meanwhile

    def _to_failed(self, folder: str, current: str, name: str, reason: str) -> None:
        reason = printable(reason)
        target = self.inbox.free_name(FAILED, name)
        self.inbox.rename(folder, current, FAILED, target)
        # The sidecar's name follows the file's (escaped when the name is not UTF-8, so it can be written).
        sidecar = (target if is_utf8(target) else printable(target)) + ".reason.txt"
        self.inbox.write_text(FAILED, self.inbox.free_name(FAILED, sidecar), reason + "\n")
        self.failed_files.append((printable(name), reason))
        log.warning("%s: %s cannot be read and was moved to failed/: %s", self.system, printable(name), reason)

    def _records(self, claimed: str, name: str, marker: str | None) -> Iterator[RawRecord]:
        if not is_utf8(name):
            # Such a name cannot be stored or shown as it is; the department must rename the export.
            self._fail(claimed, name, marker, "the file name is not valid UTF-8 (the exporter's encoding?); "
                                              "rename the file and drop it again")
            return
        # A local inbox reads the file in place; an SFTP inbox downloads it first (bounded memory, removed after).
        # Download failures raise SourceError/TransientSourceError: the file is not at fault, it stays claimed
        # and goes back on abort.
        with self.inbox.local_copy(PROCESSING, claimed) as path:
            try:
                stream = open_file(path)
            except NotARegularFile as exc:
                self._fail(claimed, name, marker, str(exc))
                return
            except OSError as exc:  # unreadable for this account (permissions …): the file's problem, not the run's
                self._fail(claimed, name, marker, f"cannot be opened: {exc.strerror or exc}")
                return
            with stream:
                yield from self._read(stream, claimed, name, marker)

    def _read(self, stream, claimed: str, name: str, marker: str | None) -> Iterator[RawRecord]:
        shown = printable(name)
        yielded = 0
        try:
            fmt = self._format_of(name)
            options = dataclasses.replace(self.options, name=shown)
            for location, data, error in reader_for(fmt)(stream, options):
                yielded += 1
                yield RawRecord(data=data, position=f"{shown} {location}", error=error and printable(error),
                                meta={"file": shown})
        except FileUnreadable as exc:
            if yielded:
                yield RawRecord(data={}, position=f"{shown} after record {yielded}", error=printable(str(exc)),
                                meta={"file": shown})
            else:
                self._fail(claimed, name, marker, str(exc))
        except (OSError, ValueError, EOFError, RecursionError) as exc:
            if yielded:
                raise SourceError(self.system, f"{shown}: read failed after {yielded} records: "
                                               f"{printable(str(exc))}") from exc
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
            log.warning("%s: returning %s to the inbox: %s", self.system, printable(name), reason)
            try:
                self.inbox.rename(PROCESSING, claimed, INBOX, self.inbox.free_name(INBOX, name))
            except TransientSourceError as exc:
                # An SFTP server gone away: the file stays in processing/ and `reclaim_after_seconds` returns it.
                # Raising here would hide the failure that made the pipeline abort.
                log.error("%s: could not return %s to the inbox (%s); a later run reclaims it", self.system,
                          printable(name), exc)
        self.claimed = []

    def close(self) -> None:
        """Readers close their files as they finish; claims stay until commit/abort. An SFTP inbox disconnects."""
        self.inbox.close()
