"""Ingest's look-ahead windows: records in order, and a read error only after every record read before it."""
from __future__ import annotations

import pytest

from tongban.pipeline.lookahead import windows


def test_windows_keep_every_record_in_order():
    assert list(windows(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(windows([], 3)) == []


def test_a_read_error_comes_after_the_records_read_before_it():
    def records():
        yield from range(5)
        raise OSError("the source went away")

    seen = []
    with pytest.raises(OSError, match="went away"):
        for window in windows(records(), 3):
            seen.extend(window)
    assert seen == [0, 1, 2, 3, 4]
