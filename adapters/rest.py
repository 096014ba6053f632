"""REST source adapter (httpx), declared in the mapping file rather than coded.

Every setting, with an example (the full reference with types and defaults is `adapters.rest_settings`, whose
models `tongban mapping check` validates the section against; an unknown or misspelled key is an error):

    source:
      adapter: rest
      base_url: ${CQ_SAMR_URL:-http://127.0.0.1:8701}   # scheme, host, port: the only origin ever called
      path: /api/cases                                   # the records endpoint
      params: {status: all}                              # constant query parameters
      records_path: data.items                           # JMESPath to the list of records in each answer
      timeout: 10                                        # seconds for connecting and for each read
      retry: {attempts: 5, initial_wait: 0.5, max_wait: 30}   # tongban.retry: backoff with jitter, Retry-After

      auth: {type: none}
      auth: {type: bearer, token_env: CQ_SAMR_TOKEN}
      auth: {type: basic, username_env: CQ_X_USER, password_env: CQ_X_PASSWORD}
      auth: {type: api_key, header: X-API-Key, key_env: CQ_X_KEY}
      auth: {type: login, url: /auth/login, method: POST, body_format: json,   # or form
             body: {username: cl_sync, password_env: CQ_CL_PASSWORD},          # *_env: read from the environment
             token_path: result.token, header: X-Auth-Token, prefix: "",        # prefix default "Bearer " for Authorization
             expires_in_path: result.expiresIn, expires_in: 600, refresh_before_seconds: 30,
             success: "code == '0000'"}                                        # optional check of the login answer
      auth: {type: oauth2, token_url: /oauth/token, client_id_env: CQ_X_ID, client_secret_env: CQ_X_SECRET,
             scope: cases.read, client_auth: basic, refresh_before_seconds: 30}  # client_auth: basic or body
      auth: {type: login, conn_id: cq_cl, url: /auth/login, body: {username_conn: login, password_conn: password},
             token_path: result.token}          # conn_id: the Airflow Connection (any type; Airflow must be installed)

      pagination: {style: none}
      pagination: {style: page, page_param: pageNo, size_param: pageSize, size: 100, start: 1,
                   total_path: result.totalCount}                 # total_path: optional, on every paged style
      pagination: {style: offset, offset_param: offset, limit_param: limit, size: 200, start: 0}
      pagination: {style: cursor, cursor_param: cursor, cursor_path: next_cursor, size_param: size, size: 200}
      pagination: {style: link}                                   # Link: <…>; rel="next"
      pagination: {style: link, next_path: links.next}            # or a next URL in the body
      pagination: {style: watermark, size_param: pageSize, size: 100, field: gxsj, step_back_seconds: 1}
                  # keyset: the next page asks incremental.param from the newest gxsj seen (ties asked again)

      envelope: {success: "code == '0000'", retry: "code == '9999'", reauth: "code == '4011'", message: msg}
      incremental: {param: gxsjStart, format: "%Y%m%d%H%M%S", overlap_seconds: 600}
      limits: {max_response_bytes: 16777216, call_deadline_seconds: 60, run_deadline_seconds: 3600,
               max_pages: 10000, max_json_depth: 64, max_redirects: 5}

What each answer may mean:
- HTTP 408/425/429/5xx (tongban.retry.TRANSIENT_STATUS), timeouts, connection errors, a call past its deadline:
  retried with the policy's backoff, then `TransientSourceError`.
- HTTP 401: with a login or OAuth2 token, log in again once and repeat the request; otherwise (or again) a
  `SourceError` naming the credentials to check. Any other 4xx: a permanent `SourceError`.
- HTTP 200 with an `envelope`: `success` → records; `retry` → retried like a 503; `reauth` → log in again once;
  anything else → `SourceError` naming the system and quoting the legacy message. A non-success answer is never
  the end of data, so the run fails (exit 1) and the watermark does not move. Without an envelope, an answer
  with nothing at `records_path` is a `SourceError` too (only a declared success may carry no list).
- The end of data: see adapters/rest_pages.py (`total_path`, page-size caps, loops); the bounds on size, time,
  nesting and origins: adapters/rest_http.py.

Pages are read ahead (adapters/prefetch.py): the next page is fetched in a thread of its own while the records of the
current one are mapped, at most one page waiting; records arrive in order and an error reaches the ingest after the
records before it, exactly where a plain loop would raise it.

Incremental runs ask from the watermark minus `overlap_seconds` (parsed and re-written with `format`): a record
written late in the same second as the last run's newest one is fetched, the ones fetched again unchanged are
recognised by change detection (no event, no quarantine).

Seams for tests: `transport=` (httpx.MockTransport, the seam httpx itself offers; the deadline-enforcing
transport is then not used), `clock=` (monotonic seconds, for token expiry and deadlines), `sleep=` (retry waits).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Iterator

import jmespath

from adapters.base import Adapter, RawRecord, SourceError, TransientSourceError
from adapters.rest_auth import TokenAuth, quote_answer
from adapters.rest_client import RestClient
from adapters.rest_http import Answer, RunDeadlineExceeded
from adapters.prefetch import prefetched
from adapters.rest_pages import Walk
from adapters.rest_settings import NoPages, RestSettings
from tongban.retry import Retryable

log = logging.getLogger(__name__)

PREFETCH_PAGES = 1  # pages read ahead of the one being mapped (one more is in flight): memory stays a few pages


class RestAdapter(RestClient, Adapter):  # kind "rest", as RestClient says
    settings_model = RestSettings

    def __init__(self, system: str, settings: dict[str, Any], **seams: Any):
        super().__init__(system, settings, **seams)
        self.records_path = jmespath.compile(self.config.records_path)
        self.last_walk: Walk | None = None

    # --- one logical request: retries, re-login, envelope ------------------------------------------
    def _refusal(self, what: str, verdict: str, message: str, renewed: bool) -> SourceError:
        if verdict == "unauthorized":
            hint = "even after logging in again" if renewed else "check the credentials that auth names"
            return SourceError(self.system, f"{what} answered HTTP 401 (credentials refused), {hint}")
        if verdict == "reauth":
            why = "even after a fresh login" if renewed else "and auth has no login to renew the token with"
            return SourceError(self.system, f"{what}: the legacy system asks to log in again {why}: {message}")
        return SourceError(self.system, f"{what}: {self.system} answered an error inside HTTP 200 "
                                        f"(not the end of data): {message}")

    def call(self, target: Any, params: dict | None, where: str) -> Answer:
        what = f"GET {target if isinstance(target, str) else target.path} ({where})"
        attempt = self._attempt(what, lambda: self.http.exchange("GET", target, params=params, auth=self.auth,
                                                                 what=what))

        def noted(exc: BaseException, attempt_number: int, wait: float) -> None:
            log.warning("%s: %s (attempt %d of %d), retrying in %.1f s", self.system, exc, attempt_number,
                        self.policy.attempts, wait)

        try:
            return self.policy.call(attempt, deadline=self.http.run_deadline, clock=self.clock, before_sleep=noted)
        except Retryable as exc:
            self.http.check_run_deadline(what)
            waited = exc.retry_after
            if waited is not None and waited > self.policy.max_wait:
                raise TransientSourceError(self.system, f"{what}: the server asks to retry after {waited:.0f} s, more "
                                                        f"than retry.max_wait ({self.policy.max_wait:g} s): left to the "
                                                        "next scheduled run") from exc
            raise TransientSourceError(self.system, f"{what} failed {getattr(exc, 'attempts', '?')} times: "
                                                    f"{exc}") from exc

    def records_of(self, answer: Answer, where: str) -> list:
        records = self.records_path.search(answer.body)
        if records is None:
            if self.envelope is not None:
                return []  # the envelope said success: an answer without a list is an empty one
            # Without an envelope an answer with no list is not known to be the end: `{"code":"4011"}` would
            # otherwise read as "no more records" and the run would look finished.
            raise SourceError(self.system, f"{where}: the answer has nothing at records_path "
                                           f"{self.config.records_path!r}: {quote_answer(answer.body)} (declare an "
                                           "envelope if the system answers errors inside HTTP 200)")
        if not isinstance(records, list):
            raise SourceError(self.system, f"{where}: records_path {self.config.records_path!r} gives "
                                           f"{type(records).__name__}, not a list")
        return records

    # --- the seam ------------------------------------------------------------------------------------
    def _since(self, watermark: str) -> str:
        inc = self.config.incremental
        assert inc is not None
        if not inc.format:
            return watermark
        try:
            moment = datetime.strptime(watermark.strip(), inc.format)
        except ValueError:
            raise SourceError(self.system, f"the watermark {watermark!r} does not match incremental.format "
                                           f"{inc.format!r}") from None
        return (moment - timedelta(seconds=inc.overlap_seconds)).strftime(inc.format)

    def fetch(self, watermark: str | None) -> Iterator[RawRecord]:
        params: dict[str, Any] = dict(self.config.params)
        if watermark and self.config.incremental:
            params[self.config.incremental.param] = self._since(watermark)
        self.http.start_run()
        walk = self.last_walk = Walk(self.system, self.config.pagination, self.config.limits.max_pages,
                                     self.call, self.records_of, self.config.incremental)
        pages = walk.pages(self.config.path, params)
        if not isinstance(self.config.pagination, NoPages):
            # The next page is fetched while this one is mapped (adapters.prefetch: same order, same errors at the
            # same point, the same end; a consumer that stops early stops the reader).
            pages = prefetched(pages, PREFETCH_PAGES, name=f"rest-prefetch-{self.system}")
        try:
            for page in pages:
                for record, position in page:
                    if isinstance(record, dict):
                        yield RawRecord(record, position)
                    else:
                        yield RawRecord({"value": record}, position,
                                        error=f"the record is a JSON {type(record).__name__}, not an object")
        finally:
            pages.close()

    @property
    def logins(self) -> int:
        return self.auth.logins if isinstance(self.auth, TokenAuth) else 0

    def close(self) -> None:
        self.http.close()


__all__ = ["RestAdapter", "RestSettings", "RunDeadlineExceeded"]
