"""REST source adapter (httpx), declared in the mapping file rather than coded.

    source:
      adapter: rest
      base_url: ${CQ_SAMR_URL:-http://127.0.0.1:8701}
      path: /api/cases
      params: {status: all}                      # constant query parameters
      auth: {type: bearer, token_env: CQ_SAMR_TOKEN}   # or basic (username_env, password_env) or api_key (header, key_env)
      pagination: {style: page, page_param: page, size_param: size, size: 200}
                  # style: page | offset (offset_param, limit_param) | cursor (cursor_param, cursor_path) | link | none
      incremental: {param: updated_since}        # the watermark goes into this query parameter
      records_path: data.items                   # JMESPath to the list of records in each response
      timeout: 10
      retry: {attempts: 5, initial_wait: 0.5, max_wait: 30}

Transient failures (timeouts, connection errors, 5xx, 429) are retried with exponential backoff and
jitter, honouring Retry-After; a 4xx is a permanent SourceError. Tests pass `transport=` (e.g.
httpx.MockTransport): the same seam httpx itself offers.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

import httpx
import jmespath
import tenacity

from .base import Adapter, RawRecord, SourceError, TransientSourceError

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


class _RetryAfterWait(tenacity.wait.wait_base):
    """Exponential backoff with jitter, but never shorter than the server's Retry-After."""

    def __init__(self, initial: float, maximum: float):
        self.backoff = tenacity.wait_random_exponential(multiplier=initial, max=maximum)
        self.maximum = maximum

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = self.backoff(retry_state)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.maximum))
        return wait


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime
        from datetime import datetime, timezone

        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


class RestAdapter(Adapter):
    kind = "rest"

    def __init__(self, system: str, settings: dict[str, Any], **seams: Any):
        super().__init__(system, settings, **seams)
        if "base_url" not in settings:
            raise SourceError(system, "rest source needs base_url")
        self.records_path = jmespath.compile(settings.get("records_path", "@"))
        self.pagination = dict(settings.get("pagination") or {"style": "none"})
        retry = dict(settings.get("retry") or {})
        self.attempts = int(retry.get("attempts", 5))
        self.initial_wait = float(retry.get("initial_wait", 0.5))
        self.max_wait = float(retry.get("max_wait", 30))
        self.client = httpx.Client(
            base_url=settings["base_url"], timeout=float(settings.get("timeout", 10)),
            transport=seams.get("transport"), auth=self._auth(), headers=self._headers())

    # --- auth: secrets come from the environment, named in the mapping file ----------------------
    def _secret(self, auth: dict, key: str) -> str:
        name = auth.get(key)
        if not name:
            raise SourceError(self.system, f"auth needs {key} (the environment variable holding the secret)")
        value = os.environ.get(name)
        if not value:
            raise SourceError(self.system, f"environment variable {name} ({key}) is not set")
        return value

    def _auth(self) -> httpx.Auth | None:
        auth = self.settings.get("auth") or {}
        if auth.get("type") == "basic":
            return httpx.BasicAuth(self._secret(auth, "username_env"), self._secret(auth, "password_env"))
        return None

    def _headers(self) -> dict[str, str]:
        auth = self.settings.get("auth") or {}
        kind = auth.get("type")
        if kind == "bearer":
            return {"Authorization": f"Bearer {self._secret(auth, 'token_env')}"}
        if kind == "api_key":
            return {auth.get("header", "X-API-Key"): self._secret(auth, "key_env")}
        if kind not in (None, "basic", "none"):
            raise SourceError(self.system, f"unknown auth type {kind!r} (bearer, basic, api_key)")
        return {}

    # --- one request, retried -------------------------------------------------------------------
    def _get(self, url: str, params: dict[str, Any] | None) -> httpx.Response:
        def attempt() -> httpx.Response:
            try:
                response = self.client.get(url, params=params)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                raise _Transient(f"{type(exc).__name__}: {exc}") from exc
            if response.status_code in TRANSIENT_STATUS:
                raise _Transient(f"HTTP {response.status_code}", _retry_after(response))
            if response.status_code >= 400:
                raise SourceError(self.system, f"GET {response.request.url.path} answered HTTP {response.status_code}: "
                                               f"{response.text[:200]}")
            return response

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=_RetryAfterWait(self.initial_wait, self.max_wait),
            retry=tenacity.retry_if_exception_type(_Transient), reraise=True)
        try:
            return retrying(attempt)
        except _Transient as exc:
            raise TransientSourceError(self.system, f"GET {url} failed {self.attempts} times: {exc}") from exc

    def _records(self, response: httpx.Response, where: str) -> list:
        try:
            body = response.json()
        except ValueError as exc:
            raise SourceError(self.system, f"{where}: response is not JSON") from exc
        records = self.records_path.search(body)
        if records is None:
            return []
        if not isinstance(records, list):
            raise SourceError(self.system, f"{where}: records_path gives {type(records).__name__}, not a list")
        return records

    # --- pagination -----------------------------------------------------------------------------
    def fetch(self, watermark: str | None) -> Iterator[RawRecord]:
        params = dict(self.settings.get("params") or {})
        incremental = self.settings.get("incremental") or {}
        if watermark and incremental.get("param"):
            params[incremental["param"]] = watermark
        path = self.settings.get("path", "")
        style = self.pagination.get("style", "none")
        size = int(self.pagination.get("size", 100))
        if style == "none":
            response = self._get(path, params)
            for i, record in enumerate(self._records(response, "response")):
                yield RawRecord(record, f"{path} #{i + 1}")
        elif style in ("page", "offset"):
            yield from self._numbered_pages(path, params, style, size)
        elif style == "cursor":
            yield from self._cursor_pages(path, params, size)
        elif style == "link":
            yield from self._link_pages(path, params)
        else:
            raise SourceError(self.system, f"unknown pagination style {style!r} (page, offset, cursor, link, none)")

    def _numbered_pages(self, path, params, style, size) -> Iterator[RawRecord]:
        p = self.pagination
        number = int(p.get("start", 1 if style == "page" else 0))
        while True:
            query = dict(params)
            if style == "page":
                query[p.get("page_param", "page")] = number
                query[p.get("size_param", "size")] = size
                where = f"page {number}"
            else:
                query[p.get("offset_param", "offset")] = number
                query[p.get("limit_param", "limit")] = size
                where = f"offset {number}"
            records = self._records(self._get(path, query), where)
            for i, record in enumerate(records):
                yield RawRecord(record, f"{where} #{i + 1}")
            if len(records) < size:
                return
            number += 1 if style == "page" else size

    def _cursor_pages(self, path, params, size) -> Iterator[RawRecord]:
        p = self.pagination
        cursor_path = jmespath.compile(p.get("cursor_path", "next_cursor"))
        cursor = None
        page = 0
        while True:
            page += 1
            query = dict(params)
            query[p.get("size_param", "size")] = size
            if cursor:
                query[p.get("cursor_param", "cursor")] = cursor
            response = self._get(path, query)
            for i, record in enumerate(self._records(response, f"page {page}")):
                yield RawRecord(record, f"page {page} #{i + 1}")
            cursor = cursor_path.search(response.json())
            if not cursor:
                return

    def _link_pages(self, path, params) -> Iterator[RawRecord]:
        url, query, page = path, params, 0
        while url:
            page += 1
            response = self._get(url, query)
            for i, record in enumerate(self._records(response, f"page {page}")):
                yield RawRecord(record, f"page {page} #{i + 1}")
            url = response.links.get("next", {}).get("url")
            query = None  # the next link carries its own query

    def close(self) -> None:
        self.client.close()
