"""Doubles and helpers shared by several test files (imported as `tests.support`)."""
from __future__ import annotations

import shutil
from pathlib import Path

from adapters.base import Adapter, RawRecord


class ListAdapter(Adapter):
    """A legacy system that is a list of records: what a test wants ingest to see, with positions as references."""

    kind = "records"

    def __init__(self, records, system: str = "cq-samr-rest"):
        super().__init__(system, {})
        self.records = records

    def fetch(self, watermark):
        for i, record in enumerate(self.records):
            yield RawRecord(record, f"#{i + 1}")


def mapping_variant(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    """A copy of a mapping file (with its code tables beside it) where `old` is replaced by `new`."""
    text = source.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {source.name}"
    if not (tmp_path / "tables").exists():
        shutil.copytree(source.parent / "tables", tmp_path / "tables")
    path = tmp_path / source.name
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    """The 1-based number of the first line of `path` holding `needle` (errors must name it)."""
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)
