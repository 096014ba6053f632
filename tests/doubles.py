"""Test doubles shared by several test files (imported as `tests.doubles`)."""
from __future__ import annotations

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
