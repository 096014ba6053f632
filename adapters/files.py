"""File-drop source adapter (kind "files"): a department drops export files into a directory.

Settings (the `source:` section of a mapping file):

    kind: files
    directory: /data/drop/wsjkw          # the inbox; processing/, done/ and failed/ are made beside the files
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
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator

from adapters.base import Adapter, RawRecord, SourceError
from adapters.formats import FileUnreadable, ReadOptions, reader_for
from adapters.formats.text import SUPPORTED as SUPPORTED_ENCODINGS

log = logging.getLogger(__name__)

FORMATS = ("csv", "xml", "jsonl", "xlsx")
_SUFFIX_FORMATS = {".csv": "csv", ".txt": "csv", ".xml": "xml", ".jsonl": "jsonl", ".ndjson": "jsonl", ".xlsx": "xlsx"}


def _free_name(directory: Path, name: str) -> Path:
    """`name` in `directory`, or `name` with a timestamp when a file of that name is already there
    (departments reuse export names day after day)."""
    target = directory / name
    if not target.exists():
        return target
    stem, dot, suffix = name.partition(".")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for n in range(1, 10_000):
        target = directory / f"{stem}.{stamp}-{n}{dot}{suffix}"
        if not target.exists():
            return target
    raise SourceError("files", f"no free name for {name} in {directory}")


class FileDropAdapter(Adapter):
    kind = "files"

    def __init__(self, system: str, settings: dict[str, Any], **seams: Any):
        super().__init__(system, settings, **seams)
        if not settings.get("directory"):
            raise SourceError(system, "source setting 'directory' is required")
        directory = str(settings["directory"])
        if directory.startswith("sftp://"):
            raise SourceError(system, "sftp:// directories are not supported yet; mount or sync to a local path")
        self.inbox = Path(directory)
        self.processing = self.inbox / "processing"
        self.done = self.inbox / "done"
        self.failed = self.inbox / "failed"
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
        self.claimed: list[tuple[Path, str, Path | None]] = []  # (path in processing/, original name, marker)
        self.failed_files: list[tuple[str, str]] = []          # (file name, reason)
        self.waiting_files: list[str] = []                      # seen but not ready (unstable or no marker)

    # --- selection and claiming --------------------------------------------------------------
    def _marker_for(self, path: Path) -> Path | None:
        if not self.ready_marker:
            return None
        for candidate in (path.with_name(path.name + self.ready_marker), path.with_suffix(self.ready_marker)):
            if candidate.exists():
                return candidate
        return None

    def _ready(self) -> list[tuple[Path, os.stat_result]]:
        now = self._clock()
        ready = []
        for path in self.inbox.glob(self.pattern):
            if not path.is_file() or (self.ready_marker and path.name.endswith(self.ready_marker)):
                continue
            stat = path.stat()
            if now - stat.st_mtime < self.stable_seconds:
                self.waiting_files.append(path.name)
                log.info("%s: %s was modified %.0f s ago; waiting until it is stable", self.system, path.name,
                         now - stat.st_mtime)
                continue
            if self.ready_marker and self._marker_for(path) is None:
                self.waiting_files.append(path.name)
                continue
            ready.append((path, stat))
        # Oldest export first: events of one case must reach the bus in the order the department wrote them.
        ready.sort(key=lambda item: (item[1].st_mtime, item[0].name))
        return ready

    def _claim(self, path: Path, seen: os.stat_result) -> Path | None:
        try:
            now = path.stat()
        except FileNotFoundError:
            return None  # another worker took it
        if (now.st_size, now.st_mtime) != (seen.st_size, seen.st_mtime):
            self.waiting_files.append(path.name)  # still growing
            return None
        target = _free_name(self.processing, path.name)
        try:
            os.rename(path, target)  # atomic within one file system: exactly one claimant wins
        except FileNotFoundError:
            return None
        self.claimed.append((target, path.name, self._marker_for(path)))
        return target

    def _reclaim_stale(self) -> None:
        if not self.processing.is_dir():
            return
        now = self._clock()
        for path in self.processing.iterdir():
            # A rename updates ctime: this is how long the file has sat in processing/.
            if path.is_file() and now - path.stat().st_ctime > self.reclaim_after:
                log.warning("%s: %s was left in processing/ by an earlier run; returning it to the inbox",
                            self.system, path.name)
                os.rename(path, _free_name(self.inbox, path.name))

    # --- reading ------------------------------------------------------------------------------
    def _format_of(self, name: str) -> str:
        if self.format:
            return self.format
        fmt = _SUFFIX_FORMATS.get(Path(name).suffix.lower())
        if fmt is None:
            raise FileUnreadable(f"cannot tell the format of {name}; set `format:` in the source settings")
        return fmt

    def _fail(self, path: Path, name: str, marker: Path | None, reason: str) -> None:
        self.claimed = [c for c in self.claimed if c[0] != path]
        target = _free_name(self.failed, name)
        os.rename(path, target)
        target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
        if marker is not None and marker.exists():
            os.rename(marker, _free_name(self.failed, marker.name))
        self.failed_files.append((name, reason))
        log.warning("%s: %s cannot be read and was moved to failed/: %s", self.system, name, reason)

    def _records(self, path: Path, name: str, marker: Path | None) -> Iterator[RawRecord]:
        yielded = 0
        try:
            for location, data, error in reader_for(self._format_of(name))(path, self.options):
                yielded += 1
                yield RawRecord(data=data, position=f"{name} {location}", error=error, meta={"file": name})
        except FileUnreadable as exc:
            if yielded:
                yield RawRecord(data={}, position=f"{name} after record {yielded}", error=str(exc), meta={"file": name})
            else:
                self._fail(path, name, marker, str(exc))
        except (OSError, ValueError) as exc:
            if yielded:
                raise SourceError(self.system, f"{name}: read failed after {yielded} records: {exc}") from exc
            self._fail(path, name, marker, f"{type(exc).__name__}: {exc}")

    # --- the seam -----------------------------------------------------------------------------
    def fetch(self, watermark: str | None = None) -> Iterator[RawRecord]:
        """Yield the records of every ready file in the inbox (the watermark is not used: moves are the progress)."""
        if not self.inbox.is_dir():
            raise SourceError(self.system, f"inbox directory {self.inbox} does not exist")
        for directory in (self.processing, self.done, self.failed):
            directory.mkdir(exist_ok=True)
        self.waiting_files = []
        self._reclaim_stale()
        for path, stat in self._ready():
            claimed = self._claim(path, stat)
            if claimed is not None:
                yield from self._records(claimed, path.name, self.claimed[-1][2])

    def commit(self) -> None:
        for path, name, marker in self.claimed:
            os.rename(path, _free_name(self.done, name))
            if marker is not None and marker.exists():
                os.rename(marker, _free_name(self.done, marker.name))
        self.claimed = []

    def abort(self, reason: str) -> None:
        for path, name, _marker in self.claimed:
            log.warning("%s: returning %s to the inbox: %s", self.system, name, reason)
            os.rename(path, _free_name(self.inbox, name))
        self.claimed = []

    def close(self) -> None:
        """Nothing to release: readers close their files as they finish; claims stay until commit/abort."""
