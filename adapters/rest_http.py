"""One bounded HTTP exchange with a legacy REST system: what the adapter may receive, and for how long.

`BoundedHttp.exchange()` sends one request and gives back the parsed JSON answer, or raises:

- `Retryable` (tongban.retry) for what is worth another try: timeouts, connection errors, a transient HTTP
  status (with its Retry-After), a call that ran past `limits.call_deadline_seconds`;
- `SourceError` for what is not: any other 4xx/5xx, a body over `limits.max_response_bytes`, a body that is not
  JSON or nests deeper than `limits.max_json_depth`, a redirect to another origin or more than
  `limits.max_redirects` of them, a URL of another origin (credentials are never sent there: the request
  is refused before it is made), the run's own deadline passed.

Bounds are enforced while the body arrives, not after: it is streamed and reading stops at the size cap, and
every socket connect, read and write waits at most until the call's deadline (a network backend that clamps
each timeout), so a server dripping one byte every few seconds fails at the deadline, never later.

This module refuses to know pagination, envelopes, records and credentials (auth is an httpx.Auth handed in).
"""
from __future__ import annotations

import json
import time
from itertools import repeat
from typing import Any, Callable

import httpcore
import httpx

from adapters.base import SourceError
from adapters.rest_auth import CrossOriginRefused, origin
from adapters.rest_settings import Limits
from tongban.retry import TRANSIENT_STATUS, Retryable, retry_after_seconds
from tongban.tls import client_context


class Unauthorized(SourceError):
    """HTTP 401: the adapter may log in again once before it is final."""


class RunDeadlineExceeded(SourceError):
    """The fetch as a whole ran past limits.run_deadline_seconds."""


class _Deadline:
    """The monotonic time by which the current call must be over (None: no call in progress)."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.at: float | None = None

    def clamp(self, timeout: float | None, error: type[Exception]) -> float | None:
        if self.at is None:
            return timeout
        left = self.at - self.clock()
        if left <= 0:
            raise error("the call's deadline passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: _Deadline):
        self.stream, self.deadline = stream, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self.deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self.deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        timeout = self.deadline.clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self.stream.start_tls(ssl_context, server_hostname, timeout), self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: _Deadline):
        self.backend, self.deadline = httpcore.SyncBackend(), deadline

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        stream = self.backend.connect_tcp(host, port, self.deadline.clamp(timeout, httpcore.ConnectTimeout),
                                          local_address, socket_options)
        return _DeadlineStream(stream, self.deadline)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # pragma: no cover - not used
        return _DeadlineStream(self.backend.connect_unix_socket(path, timeout, socket_options), self.deadline)

    def sleep(self, seconds: float) -> None:  # pragma: no cover - httpcore's retries are off
        self.backend.sleep(seconds)


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport over a connection pool whose sockets obey the call deadline."""

    def __init__(self, deadline: _Deadline):
        super().__init__(verify=client_context())  # its own pool is replaced below; no second CA bundle load
        self._pool = httpcore.ConnectionPool(ssl_context=client_context(), max_connections=10,
                                             max_keepalive_connections=5, keepalive_expiry=5.0,
                                             network_backend=_DeadlineBackend(deadline))


def json_depth(value: Any, limit: int) -> int:
    """The nesting depth of a parsed JSON value, counted without recursion; stops past `limit`.
    Only the values that nest are put on the stack: a page of flat records costs one pass per record."""
    if not isinstance(value, _NESTED):
        return 0
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        children = item.values() if isinstance(item, dict) else item
        nested = [child for child in children if isinstance(child, _NESTED)]
        if nested:
            stack.extend(zip(nested, repeat(depth + 1)))
    return deepest


_NESTED = (dict, list)


class Answer:
    def __init__(self, body: Any, response: httpx.Response):
        self.body, self.url = body, response.url
        self.links = response.links


class BoundedHttp:
    def __init__(self, system: str, base_url: str, *, timeout: float, limits: Limits,
                 transport: httpx.BaseTransport | None = None, clock: Callable[[], float] = time.monotonic):
        self.system, self.limits, self.clock = system, limits, clock
        self.base = httpx.URL(base_url)
        self.origin = origin(self.base)
        self.deadline = _Deadline(clock)
        self.run_deadline: float | None = None
        self.client = httpx.Client(base_url=base_url, timeout=timeout, follow_redirects=False,
                                   transport=transport or _DeadlineTransport(self.deadline))

    def start_run(self) -> None:
        self.run_deadline = self.clock() + self.limits.run_deadline_seconds

    def check_run_deadline(self, where: str) -> None:
        if self.run_deadline is not None and self.clock() >= self.run_deadline:
            raise RunDeadlineExceeded(self.system, f"{where}: the fetch ran past its deadline of "
                                                   f"{self.limits.run_deadline_seconds:g} s (limits.run_deadline_seconds)")

    def url(self, target: str | httpx.URL) -> httpx.URL:
        return self.base.join(target) if not isinstance(target, httpx.URL) else target

    def same_origin(self, url: httpx.URL, why: str, allowed: tuple | None = None) -> httpx.URL:
        if origin(url) != (allowed or self.origin):
            scheme, host, port = origin(url)
            whose = "base_url's" if allowed in (None, self.origin) else "the declared URL's"
            raise CrossOriginRefused(self.system, f"{why} points at {scheme}://{host}:{port}, another origin than "
                                                  f"{whose}: not followed, no credentials sent")
        return url

    def exchange(self, method: str, target: str | httpx.URL, *, params: dict | None = None, auth: httpx.Auth | None,
                 what: str, json_body: Any = None, data: dict | None = None, declared: bool = False,
                 headers: dict[str, str] | None = None) -> Answer:
        """One request (redirects to the same origin followed), its JSON answer parsed within the limits.

        `declared`: the URL comes from the mapping file (a login or token endpoint), so its own origin is
        allowed even when it is not base_url's; redirects must still stay on that origin."""
        self.check_run_deadline(what)
        url = self.url(target)
        allowed = origin(url) if declared else self.origin
        self.same_origin(url, what, allowed)
        saved = self.deadline.at  # a login made inside another call's auth flow has a deadline of its own
        call_end = self.clock() + self.limits.call_deadline_seconds
        self.deadline.at = min(call_end, self.run_deadline) if self.run_deadline is not None else call_end
        try:
            return self._send(method, url, params, auth, what, json_body, data, allowed, headers)
        except httpx.TimeoutException as exc:
            if self.clock() >= self.deadline.at:
                self.check_run_deadline(what)
                raise Retryable(f"{what} ran past its deadline of {self.limits.call_deadline_seconds:g} s "
                                f"(limits.call_deadline_seconds)") from exc
            raise Retryable(f"{what}: {type(exc).__name__}") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise Retryable(f"{what}: {type(exc).__name__}: {exc}") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # a body that does not decode, a scheme not http(s) …
            raise SourceError(self.system, f"{what}: {type(exc).__name__}: {str(exc)[:200]}") from None
        finally:
            self.deadline.at = saved

    def _send(self, method, url, params, auth, what, json_body, data, allowed, headers=None) -> Answer:
        if params:  # merged into a query the path may already carry (httpx's params= would replace it)
            url = url.copy_merge_params(params)
        request = self.client.build_request(method, url, json=json_body, data=data, headers=headers)
        for _hop in range(self.limits.max_redirects + 1):
            response = self.client.send(request, auth=auth, stream=True)
            try:
                if response.is_redirect:
                    location = response.headers["Location"]
                    target = request.url.join(location)
                    self.same_origin(target, f"{what}: the redirect to {location[:100]}", allowed)
                    # 307/308 keep the method and body; the others become a GET (as browsers and httpx do).
                    if response.status_code in (307, 308):
                        request = self.client.build_request(method, target, json=json_body, data=data,
                                                            headers=headers)
                    else:
                        request = self.client.build_request("GET", target)
                    continue
                body = self._read(response, what)
                self._status(response, body, what)
                return Answer(self._parse(body, what), response)
            finally:
                response.close()
        raise SourceError(self.system, f"{what}: more than {self.limits.max_redirects} redirects (limits.max_redirects)")

    def _read(self, response: httpx.Response, what: str) -> bytes | bytearray:
        cap = self.limits.max_response_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise SourceError(self.system, f"{what}: the answer announces {int(declared)} bytes, over the cap of "
                                           f"{cap} bytes (limits.max_response_bytes)")
        body = bytearray()  # grown in place: the body is held once, never joined into a second copy
        for chunk in response.iter_bytes():  # decoded: a gzip bomb counts at its real size
            if len(body) + len(chunk) > cap:
                raise SourceError(self.system, f"{what}: the answer passed the cap of {cap} bytes "
                                               f"(limits.max_response_bytes); reading stopped")
            body += chunk
            if self.deadline.at is not None and self.clock() >= self.deadline.at:
                raise httpx.ReadTimeout("the call's deadline passed", request=response.request)
        return body  # json.loads reads a bytearray as it is

    def _status(self, response: httpx.Response, body: bytes | bytearray, what: str) -> None:
        status = response.status_code
        if status in TRANSIENT_STATUS:
            raise Retryable(f"{what} answered HTTP {status}", retry_after_seconds(response.headers.get("Retry-After")))
        if status == 401:
            error: SourceError = Unauthorized(self.system, f"{what} answered HTTP 401 (credentials refused)")
        elif status >= 400:
            text = bytes(body[:200]).decode("utf-8", errors="replace")
            error = SourceError(self.system, f"{what} answered HTTP {status}: {text}")
        else:
            return
        error.status = status  # type: ignore[attr-defined]
        raise error

    def _parse(self, body: bytes | bytearray, what: str) -> Any:
        limit = self.limits.max_json_depth
        try:
            parsed = json.loads(body)
        except RecursionError:
            parsed = None
        except ValueError as exc:
            raise SourceError(self.system, f"{what}: the answer is not JSON ({exc.__class__.__name__} at "
                                           f"byte {getattr(exc, 'pos', '?')})") from None
        else:
            if json_depth(parsed, limit) <= limit:
                return parsed
        raise SourceError(self.system, f"{what}: the answer's JSON nests deeper than {limit} levels "
                                       f"(limits.max_json_depth)")

    def close(self) -> None:
        self.client.close()
