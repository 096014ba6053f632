"""Walking the pages of a legacy REST query until the end of data — and only the real end.

One walker per `pagination.style` (none, page, offset, cursor, link). Each asks `call(target, params, where)`
for an answer and `records_of(answer, where)` for its records. `pages()` yields each page as a list of
`(record, position)` (what the adapter's prefetch thread hands over, page by page); `walk()` yields them one by one.

End of data is what the source says it is:
- with `total_path`, a run that got fewer records than the total fails (`TotalMismatch`); a page shorter than
  the size asked for while the total says more remain is a server-side page-size cap: the walk goes on with the
  server's effective size (page numbers recomputed from what was fetched), logged, never stopped silently;
- without it, a short page (or no cursor, no next link) is the end, as the server declares it;
- `watermark` (keyset) pages ask each next page from the newest 更新时间 of the page before, stepped back by
  `step_back_seconds`, and skip the records already yielded: two records sharing a second across a page
  boundary are both fetched, once each.

Loop and size guards (`PageGuard`): at most `limits.max_pages` pages; the same cursor or next link twice, or
the same page content twice, is a pagination loop and fails the run (`PaginationLoop`).
"""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

import httpx
import jmespath

from adapters.base import SourceError
from adapters.rest_settings import CursorPages, LinkPages, NoPages, OffsetPages, PagePages, WatermarkPages

log = logging.getLogger(__name__)

Call = Callable[[Any, dict | None, str], Any]          # (target, params, where) -> Answer
RecordsOf = Callable[[Any, str], list]                 # (answer, where) -> records


class PaginationLoop(SourceError):
    """The server sent the same page, cursor or link again."""


class TotalMismatch(SourceError):
    """Fewer records were fetched than the server's own total says."""


class PageGuard:
    def __init__(self, system: str, max_pages: int):
        self.system, self.max_pages = system, max_pages
        self.pages = 0
        self._tokens: set[str] = set()
        self._digests: dict[str, str] = {}

    def request(self, token: str | None, what: str) -> None:
        """Called before each page; `token` is the cursor or link the page is asked with."""
        if self.pages >= self.max_pages:
            raise SourceError(self.system, f"{what}: more than {self.max_pages} pages (limits.max_pages); the run "
                                           "stops as failed")
        if token is not None:
            if token in self._tokens:
                raise PaginationLoop(self.system, f"{what}: the server sent {token[:120]!r} a second time: "
                                                  "a pagination loop; the run stops as failed")
            self._tokens.add(token)
        self.pages += 1

    def content(self, records: list, where: str) -> None:
        if not records:
            return
        # The page as the server wrote it (key order kept: one server writes one page the same way twice), in
        # half the time of a key-sorted dump; this runs for every page of every run.
        digest = hashlib.sha256(json.dumps(records, ensure_ascii=False, default=str).encode()).hexdigest()
        if digest in self._digests:
            raise PaginationLoop(self.system, f"{where} holds the same records as {self._digests[digest]}: the server "
                                              "ignores the page it is asked for; the run stops as failed")
        self._digests[digest] = where


class Walk:
    """State of one fetch's walk: the pages, the records counted, the server's total."""

    def __init__(self, system: str, pagination: Any, max_pages: int, call: Call, records_of: RecordsOf,
                 incremental: Any = None):
        self.system, self.p, self.call, self.records_of = system, pagination, call, records_of
        self.incremental = incremental
        self.guard = PageGuard(system, max_pages)
        self.total_path = jmespath.compile(pagination.total_path) if getattr(pagination, "total_path", None) else None
        self.total: int | None = None
        self.fetched = 0
        self.effective_size: int | None = None

    def _page(self, target: Any, params: dict | None, where: str, token: str | None = None,
              check_content: bool = True) -> tuple[Any, list]:
        self.guard.request(token, where)
        answer = self.call(target, params, where)
        records = self.records_of(answer, where)
        if check_content:
            self.guard.content(records, where)
        if self.total_path is not None and self.total is None:
            value = self.total_path.search(answer.body)
            try:
                self.total = int(value)
            except (TypeError, ValueError):
                raise SourceError(self.system, f"{where}: pagination.total_path {self.p.total_path!r} gives "
                                               f"{value!r}, not a number") from None
        self.fetched += len(records)
        return answer, records

    def _more_remain(self) -> bool:
        return self.total is not None and self.fetched < self.total

    def check_total(self) -> None:
        if self.total is not None and self.fetched < self.total:
            raise TotalMismatch(self.system, f"fetched {self.fetched} records but the server's "
                                             f"{self.p.total_path} says {self.total}: the run stops as failed "
                                             "(the watermark does not move)")

    def walk(self, path: str, params: dict) -> Iterator[tuple[dict, str]]:
        for page in self.pages(path, params):
            yield from page

    def pages(self, path: str, params: dict) -> Iterator[list[tuple[dict, str]]]:
        """Each page's records with their positions; the total is checked after the last page."""
        if isinstance(self.p, NoPages):
            _answer, records = self._page(path, params, "response")
            yield [(r, f"response #{i}") for i, r in enumerate(records, start=1)]
        elif isinstance(self.p, (PagePages, OffsetPages)):
            yield from self._numbered(path, params)
        elif isinstance(self.p, CursorPages):
            yield from self._cursor(path, params)
        elif isinstance(self.p, LinkPages):
            yield from self._links(path, params)
        elif isinstance(self.p, WatermarkPages):
            yield from self._keyset(path, params)
        self.check_total()

    def _numbered(self, path: str, params: dict) -> Iterator[tuple[dict, str]]:
        p = self.p
        by_page = isinstance(p, PagePages)
        number, size = p.start, p.size
        full_page_seen = False  # a full page at this size was answered: a later short one is no cap
        while True:
            query = dict(params)
            if by_page:
                query[p.page_param], query[p.size_param] = number, size
                where = f"page {number}"
            else:
                query[p.offset_param], query[p.limit_param] = number, size
                where = f"offset {number}"
            _answer, records = self._page(path, query, where)
            yield [(r, f"{where} #{i}") for i, r in enumerate(records, start=1)]
            if len(records) > size and by_page:
                raise SourceError(self.system, f"{where}: {len(records)} records for a page size of {size}: "
                                               "page numbers are ambiguous; set pagination.size to what the server sends")
            if len(records) < size:
                if not (records and self._more_remain()) or full_page_seen:
                    return  # the end, as the server declares it (a total it contradicts fails in check_total)
                # A server-side cap on the page size: go on with what the server really sends.
                effective = len(records)
                if by_page and (self.fetched % effective):
                    raise SourceError(self.system, f"{where}: the server sends {effective} records per page, not "
                                                   f"{size}, and {self.fetched} fetched is no whole number of its "
                                                   f"pages: set pagination.size to {effective}")
                log.warning("%s: %s: the server caps the page size at %d (asked %d); going on with %d",
                            self.system, where, effective, size, effective)
                self.effective_size = size = effective
                number = p.start + self.fetched // effective if by_page else number + len(records)
                continue
            full_page_seen = True
            number = number + 1 if by_page else number + len(records)

    def _cursor(self, path: str, params: dict) -> Iterator[tuple[dict, str]]:
        p = self.p
        cursor_path = jmespath.compile(p.cursor_path)
        cursor, page = None, 0
        while True:
            page += 1
            query = {**params, p.size_param: p.size}
            if cursor is not None:
                query[p.cursor_param] = cursor
            where = f"page {page}"
            answer, records = self._page(path, query, where, token=None if cursor is None else f"cursor {cursor}")
            yield [(r, f"{where} #{i}") for i, r in enumerate(records, start=1)]
            nxt = cursor_path.search(answer.body)
            if nxt in (None, "", False):
                return
            cursor = str(nxt)

    def _links(self, path: str, params: dict) -> Iterator[tuple[dict, str]]:
        p = self.p
        next_path = jmespath.compile(p.next_path) if p.next_path else None
        target: Any = path
        query: dict | None = params
        token, page = None, 0
        while target:
            page += 1
            where = f"page {page}"
            answer, records = self._page(target, query, where, token=token)
            yield [(r, f"{where} #{i}") for i, r in enumerate(records, start=1)]
            link = next_path.search(answer.body) if next_path else answer.links.get("next", {}).get("url")
            if not link:
                return
            try:
                target = answer.url.join(str(link))  # relative links are relative to the page that gave them
            except httpx.InvalidURL as exc:
                raise SourceError(self.system, f"{where}: the next link {str(link)[:100]!r} is no URL: {exc}") from None
            token, query = f"link {target}", None  # the next link carries its own query

    def _keyset(self, path: str, params: dict) -> Iterator[tuple[dict, str]]:
        """Each page asks from the newest watermark of the page before, stepped back so that ties are asked
        again; records already yielded at or after that point are skipped (same content), so none is lost or
        doubled. Only those records' digests are kept: memory stays bounded by the tie window."""
        p, inc = self.p, self.incremental
        field = jmespath.compile(p.field)
        since = params.get(inc.param)
        recent: list[tuple[datetime, str]] = []   # (watermark, digest) of yielded records the next page may repeat
        page = 0
        while True:
            page += 1
            query = {**params, p.size_param: p.size}
            if since is not None:
                query[inc.param] = since
            where = f"page {page}" + (f" ({inc.param} {since})" if since is not None else "")
            _answer, records = self._page(path, query, where, check_content=False)
            seen = {d for _m, d in recent}
            entries = [(self._moment(field, r, where), _digest(r), r) for r in records]
            fresh = [(m, d, r) for m, d, r in entries if d not in seen]
            self.fetched -= len(records) - len(fresh)  # asked again on purpose: not fetched twice
            yield [(r, f"{where} #{i}") for i, (_m, _d, r) in enumerate(fresh, start=1)]
            if len(records) < p.size:
                return
            if not fresh:
                raise SourceError(self.system, f"{where}: a whole page of {p.size} records shares one {p.field} "
                                               "window: raise pagination.size above the most records written in "
                                               "one second")
            moment = max(m for m, _d, _r in entries) - timedelta(seconds=p.step_back_seconds)
            since = moment.strftime(inc.format)
            recent = [(m, d) for m, d in recent + [(m, d) for m, d, _r in fresh] if m >= moment]

    def _moment(self, field: Any, record: Any, where: str) -> datetime:
        value = field.search(record) if isinstance(record, dict) else None
        try:
            return datetime.strptime(str(value), self.incremental.format)
        except ValueError:
            raise SourceError(self.system, f"{where}: a record's {self.p.field} is {value!r}, not a value of "
                                           f"incremental.format {self.incremental.format!r}") from None


def _digest(record: Any) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()
