"""The REST adapter reads the next page while the current one is mapped — and keeps every promise of a plain loop:
the records in order, an error after the records before it (a run that stopped early fails, it never looks
finished), and no reader left behind when the consumer stops."""
from __future__ import annotations

import threading

import httpx
import pytest

from adapters.base import SourceError
from adapters.rest import RestAdapter

RECORDS = [{"id": i} for i in range(10)]


def _adapter(handler, **settings):
    base = {"base_url": "http://legacy.test", "path": "/cases", "records_path": "items",
            "pagination": {"style": "page", "size": 3},
            "retry": {"attempts": 2, "initial_wait": 0.01, "max_wait": 0.02}}
    base.update(settings)
    return RestAdapter("test-system", base, transport=httpx.MockTransport(handler))


def _pages(request):
    page, size = int(request.url.params["page"]), int(request.url.params["size"])
    return httpx.Response(200, json={"items": RECORDS[(page - 1) * size: page * size]})


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rest-prefetch-")]


def test_the_next_page_is_asked_for_while_the_consumer_still_holds_the_first():
    asked, second = set(), threading.Event()

    def handler(request):
        asked.add(int(request.url.params["page"]))
        if 2 in asked:
            second.set()
        return _pages(request)

    records = _adapter(handler).fetch(None)
    assert next(records).data == {"id": 0}  # the consumer is busy with page 1 …
    assert second.wait(10)  # … and page 2 is asked for meanwhile
    assert [r.data["id"] for r in records] == list(range(1, 10))
    assert not _readers()


def test_an_error_on_a_later_page_comes_after_every_record_before_it():
    def handler(request):
        if request.url.params["page"] == "3":
            return httpx.Response(404, text="gone")
        return _pages(request)

    got = []
    with pytest.raises(SourceError, match="page 3.*HTTP 404"):
        for record in _adapter(handler).fetch(None):
            got.append(record.data["id"])
    assert got == [0, 1, 2, 3, 4, 5]  # pages 1 and 2, then the failure: never a silent, finished-looking end
    assert not _readers()


def test_a_total_that_does_not_match_still_fails_the_run_after_the_last_page():
    def handler(request):
        response = _pages(request)
        return httpx.Response(200, json={**response.json(), "total": 11})

    adapter = _adapter(handler, pagination={"style": "page", "size": 3, "total_path": "total"})
    got = []
    with pytest.raises(SourceError, match="fetched 10 records but the server's total says 11"):
        for record in adapter.fetch(None):
            got.append(record.data["id"])
    assert got == list(range(10))


def test_a_consumer_that_stops_early_stops_the_reader():
    asked = []

    def handler(request):
        asked.append(int(request.url.params["page"]))
        return _pages(request)

    records = _adapter(handler).fetch(None)
    assert next(records).data == {"id": 0}
    records.close()  # the ingest failed on the first record
    assert not _readers()
    assert max(asked) <= 3  # at most the page in hand, one waiting and one in flight: never the whole source
