"""Log-in, sessions, CSRF tokens and roles for the console.

The session is a signed cookie (Starlette's SessionMiddleware, itsdangerous; key `Settings.console_session_secret`,
which outside the sandbox must be set): HttpOnly, SameSite=Strict, Secure outside the sandbox, valid for 8 hours.
It holds the user's name and a CSRF token only; the role is read from the store on every request, so a user whose
role changed or who was removed loses it at once. Every POST (log-in included) must carry the session's CSRF
token in the form field `csrf_token`, compared in constant time; a missing or wrong one is 403. A page asked for
without a logged-in user redirects to the log-in page (the path asked for is kept, relative paths only).
A failed log-in says only that the name or password was not accepted; after `MAX_FAILURES` failures for one name
within `FAILURE_WINDOW` seconds that name's log-ins are refused, in the same words, until the window has passed."""
from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse

from tongban.codes import mask_text

from .users import User, authenticate, get_user

log = logging.getLogger("tongban.console")
SESSION_COOKIE = "tongban_console"
SESSION_SECONDS = 8 * 3600
CSRF_FIELD = "csrf_token"
MAX_FAILURES, FAILURE_WINDOW = 5, 300.0

router = APIRouter()


class LoginRequired(Exception):
    """No logged-in user: the app answers with a redirect to the log-in page."""

    def __init__(self, next_path: str):
        self.next_path = next_path


class Throttle:
    """Failed log-ins per name in a sliding window (this process's memory): guessing is slowed to a few tries."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW, clock=time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, name: str) -> list[float]:
        now = self.clock()
        recent = [t for t in self._failures.get(name, []) if now - t < self.window]
        self._failures[name] = recent
        return recent

    def blocked(self, name: str) -> bool:
        with self._lock:
            return len(self._recent(name.lower())) >= self.limit

    def failed(self, name: str) -> None:
        with self._lock:
            self._recent(name.lower()).append(self.clock())

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name.lower(), None)


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    expected = request.session.get("csrf")
    if not submitted or not expected or not hmac.compare_digest(submitted.encode(), expected.encode()):
        raise HTTPException(403, "the form's CSRF token is missing or does not match this session: reload the page "
                                 "and submit the form again")


def _safe_next(path: str | None) -> str:
    """Only a path on this site (no scheme, no host, no `//` or backslash tricks) is followed after log-in."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path or path.startswith("/login"):
        return "/search"
    return path


def current_user(request: Request) -> User:
    """The logged-in user (looked up in the store each time), else LoginRequired."""
    name = request.session.get("user")
    user = get_user(request.app.state.store, name) if name else None
    if user is None:
        request.session.pop("user", None)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return user


def operator(user: User = Depends(current_user)) -> User:
    if not user.may_replay:
        raise HTTPException(403, f"user {user.name} is an {user.role}: only an operator may replay")
    return user


def login_redirect(next_path: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(_safe_next(next_path), safe='/')}", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str = "/search", failed: int = 0):
    return request.app.state.templates.TemplateResponse(
        request, "login.html", {"next": _safe_next(next), "failed": bool(failed), "csrf": csrf_token(request),
                                "user": None}, status_code=401 if failed else 200)


@router.post("/login")
def login(request: Request, username: str = Form(""), password: str = Form(""), next: str = Form("/search"),
          csrf_token_value: str | None = Form(None, alias=CSRF_FIELD)):
    check_csrf(request, csrf_token_value)
    throttle: Throttle = request.app.state.throttle
    user = None if throttle.blocked(username) else authenticate(request.app.state.store, username, password)
    if user is None:
        throttle.failed(username)
        log.warning("console: log-in refused for %s", mask_text(username[:100]))
        return RedirectResponse(f"/login?failed=1&next={quote(_safe_next(next), safe='/')}", status_code=303)
    throttle.succeeded(username)
    request.session.clear()  # a fresh session (and CSRF token) for the new user
    request.session["user"] = user.name
    csrf_token(request)
    log.info("console: %s (%s) logged in", user.name, user.role)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf_token_value: str | None = Form(None, alias=CSRF_FIELD)):
    check_csrf(request, csrf_token_value)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
