"""Credentials of the REST adapter, as httpx.Auth objects (httpx's own seam for authentication).

- `StaticAuth`: a fixed header (bearer token, API key) or HTTP basic, read once from the environment or an
  Airflow Connection.
- `TokenAuth`: a token obtained by a declared login request (`type: login`) or the OAuth2 client credentials
  grant (`type: oauth2`); fetched on first use, fetched again `refresh_before_seconds` before it expires, and
  fetched again once when the server answers 401 or a `reauth` envelope (the adapter calls `invalidate()`).

Every auth is bound to the origin (scheme, host, port) of `base_url`: asked to authenticate a request for
another origin, it refuses (`CrossOriginRefused`) and sends nothing, so a credential never leaves its server
whatever a legacy answer links to. This module refuses to know pagination, envelopes and records; it gets
the login answer through a callable the adapter gives it (`post`), so the login call has the same size
caps, deadlines and retries as every other call.
"""
from __future__ import annotations

import base64
import time
from typing import Any, Callable, Generator

import httpx
import jmespath

from adapters.base import SourceError
from adapters.rest_settings import ApiKeyAuth, BasicAuth, BearerAuth, LoginAuth, NoAuth, OAuth2Auth
from tongban.settings import environment_value


class CrossOriginRefused(SourceError):
    """A credential would have been sent to another origin than base_url's."""


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, port


def env_secret(system: str, variable: str, setting: str) -> str:
    value = environment_value(variable)
    if not value:
        raise SourceError(system, f"environment variable {variable} (auth.{setting}) is not set")
    return value


def airflow_connection(system: str, conn_id: str) -> Any:
    """The Airflow Connection `conn_id` (login, password, extra): only where Airflow is installed."""
    try:
        from airflow.sdk import BaseHook
    except ImportError:
        raise SourceError(system, f"auth.conn_id {conn_id!r} names an Airflow Connection, but Airflow is not "
                                  "installed here: run under Airflow, or name environment variables (*_env) "
                                  "instead") from None
    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - Airflow raises its own AirflowNotFoundException and others
        raise SourceError(system, f"auth.conn_id: Airflow Connection {conn_id!r} cannot be read: "
                                  f"{type(exc).__name__}") from None


def _conn_value(system: str, conn: Any, conn_id: str, attribute: str) -> str:
    if attribute in ("login", "password", "host", "schema"):
        value = getattr(conn, attribute, None)
    else:  # extra.<key>
        value = (conn.extra_dejson or {}).get(attribute.removeprefix("extra."))
    if not value:
        raise SourceError(system, f"Airflow Connection {conn_id!r} has no {attribute}")
    return str(value)


class _OriginBound(httpx.Auth):
    def __init__(self, system: str, base_url: str):
        self.system = system
        self.origin = origin(httpx.URL(base_url))

    def _check(self, request: httpx.Request) -> None:
        if origin(request.url) != self.origin:
            scheme, host, port = origin(request.url)
            raise CrossOriginRefused(self.system, f"refused to send credentials to {scheme}://{host}:{port}, "
                                                  f"another origin than base_url's")


class StaticAuth(_OriginBound):
    """Fixed headers on every request to base_url's origin."""

    def __init__(self, system: str, base_url: str, headers: dict[str, str]):
        super().__init__(system, base_url)
        self.headers = headers
        self.logins = 0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._check(request)
        request.headers.update(self.headers)
        yield request

    def prepare(self) -> None:
        pass

    def invalidate(self) -> bool:
        return False  # nothing to renew: the caller reports the refusal


class TokenAuth(_OriginBound):
    """A token from a login or token request, kept until shortly before it expires."""

    def __init__(self, system: str, base_url: str, *, header: str, prefix: str,
                 fetch: Callable[[], tuple[str, float | None]], refresh_before: float,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(system, base_url)
        self.header, self.prefix, self.fetch = header, prefix, fetch
        self.refresh_before, self.clock = refresh_before, clock
        self.token: str | None = None
        self.expires_at: float | None = None
        self.logins = 0

    def _valid(self) -> bool:
        if self.token is None:
            return False
        return self.expires_at is None or self.clock() < self.expires_at - self.refresh_before

    def _ensure(self) -> str:
        if not self._valid():
            token, lifetime = self.fetch()
            self.logins += 1
            self.token = token
            self.expires_at = self.clock() + lifetime if lifetime else None
        assert self.token is not None
        return self.token

    def invalidate(self) -> bool:
        self.token = None
        return True

    def prepare(self) -> None:
        """Log in now if needed, so that the login's time does not count against the data call's deadline."""
        self._ensure()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # A 401 is not answered here with a second request: httpx would read the 401's body without bound.
        # The adapter sees the 401 (or a reauth envelope), calls invalidate() and sends the request once more.
        self._check(request)
        request.headers[self.header] = self.prefix + self._ensure()
        yield request


Post = Callable[..., Any]  # post(url, *, data=|json=, auth=, what=) -> parsed JSON body


def _lifetime(system: str, answer: Any, path: str | None, fixed: float | None, what: str) -> float | None:
    if path:
        value = jmespath.search(path, answer)
        if value not in (None, ""):
            try:
                return float(value)
            except (TypeError, ValueError):
                raise SourceError(system, f"{what}: {path} is {value!r}, not a number of seconds") from None
    return fixed


def build_auth(system: str, base_url: str, auth: Any, post: Post,
               clock: Callable[[], float] = time.monotonic) -> httpx.Auth | None:
    """The httpx.Auth for the declared `auth:` setting (None for type none)."""
    if isinstance(auth, NoAuth):
        return None
    conn = airflow_connection(system, auth.conn_id) if getattr(auth, "conn_id", None) else None

    def secret(env_setting: str, conn_attribute: str) -> str:
        variable = getattr(auth, env_setting, None)
        if variable:
            return env_secret(system, variable, env_setting)
        return _conn_value(system, conn, auth.conn_id, conn_attribute)

    if isinstance(auth, BearerAuth):
        return StaticAuth(system, base_url, {"Authorization": f"Bearer {secret('token_env', 'password')}"})
    if isinstance(auth, ApiKeyAuth):
        return StaticAuth(system, base_url, {auth.header: secret("key_env", "password")})
    if isinstance(auth, BasicAuth):
        pair = f"{secret('username_env', 'login')}:{secret('password_env', 'password')}".encode()
        return StaticAuth(system, base_url, {"Authorization": "Basic " + base64.b64encode(pair).decode()})
    if isinstance(auth, LoginAuth):
        return _login_auth(system, base_url, auth, post, conn, clock)
    if isinstance(auth, OAuth2Auth):
        return _oauth2_auth(system, base_url, auth, post, secret, clock)
    raise SourceError(system, f"unknown auth type {auth!r}")  # pragma: no cover - the model refuses it first


def _login_auth(system: str, base_url: str, auth: LoginAuth, post: Post, conn: Any,
                clock: Callable[[], float]) -> TokenAuth:
    # Read every secret now, so that a missing variable fails before the first request.
    body: dict[str, Any] = {}
    for key, value in auth.body.items():
        if key.endswith("_env"):
            body[key.removesuffix("_env")] = env_secret(system, str(value), f"body.{key}")
        elif key.endswith("_conn"):
            body[key.removesuffix("_conn")] = _conn_value(system, conn, auth.conn_id or "", str(value))
        else:
            body[key] = value
    token_path = jmespath.compile(auth.token_path)
    success = jmespath.compile(auth.success) if auth.success else None
    what = f"login at {auth.url}"

    names = ", ".join(str(v) for k, v in auth.body.items() if k.endswith(("_env", "_conn"))) or "the body"

    def fetch() -> tuple[str, float | None]:
        sent = {"json": body} if auth.body_format == "json" else {"data": {k: str(v) for k, v in body.items()}}
        try:
            answer = post(auth.url, method=auth.method, auth=None, what=what, **sent)
        except SourceError as exc:
            if getattr(exc, "status", None) in (401, 403):
                raise SourceError(system, f"{what} refused the credentials (HTTP {exc.status}): check {names}") from None
            raise
        token = token_path.search(answer)
        if (success is not None and not success.search(answer)) or not isinstance(token, str) or not token:
            raise SourceError(system, f"{what} gave no token at {auth.token_path} (check {names}): "
                                      f"{quote_answer(answer)}")
        return token, _lifetime(system, answer, auth.expires_in_path, auth.expires_in, what)

    prefix = auth.prefix if auth.prefix is not None else ("Bearer " if auth.header.lower() == "authorization" else "")
    return TokenAuth(system, base_url, header=auth.header, prefix=prefix, fetch=fetch,
                     refresh_before=auth.refresh_before_seconds, clock=clock)


def _oauth2_auth(system: str, base_url: str, auth: OAuth2Auth, post: Post, secret: Callable[[str, str], str],
                 clock: Callable[[], float]) -> TokenAuth:
    client_id, client_secret = secret("client_id_env", "login"), secret("client_secret_env", "password")
    form = {"grant_type": "client_credentials", **({"scope": auth.scope} if auth.scope else {})}
    client_auth: httpx.Auth | None = None
    if auth.client_auth == "basic":
        client_auth = httpx.BasicAuth(client_id, client_secret)
    else:
        form.update(client_id=client_id, client_secret=client_secret)
    what = f"OAuth2 token request at {auth.token_url}"

    def fetch() -> tuple[str, float | None]:
        try:
            answer = post(auth.token_url, method="POST", data=form, auth=client_auth, what=what)
        except SourceError as exc:
            if getattr(exc, "status", None) in (400, 401, 403):  # RFC 6749: invalid_client may come as 400 or 401
                raise SourceError(system, f"{what} refused the client (HTTP {exc.status}): check "
                                          f"{auth.client_id_env or auth.conn_id} and its secret") from None
            raise
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceError(system, f"{what} gave no access_token (check {auth.client_id_env or auth.conn_id}): "
                                      f"{quote_answer(answer)}")
        return token, _lifetime(system, answer, "expires_in", None, what)

    return TokenAuth(system, base_url, header="Authorization", prefix="Bearer ", fetch=fetch,
                     refresh_before=auth.refresh_before_seconds, clock=clock)


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict) and depth < 8:
        return {k: ("***" if any(w in str(k).lower() for w in ("token", "secret", "password", "key")) else
                    _redact(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list) and depth < 8:
        return [_redact(v, depth + 1) for v in value[:5]]
    return value


def quote_answer(answer: Any) -> str:
    """A short quote of an answer, with anything that looks like a token or secret blanked out."""
    return str(_redact(answer))[:200]
