"""The console's application factory: settings and store, sessions, templates, security headers, error pages.

`create_app(settings)` needs nothing else: the store is the settings' (SQLite under TONGBAN_HOME or
TONGBAN_DB_URL), the cookie key `Settings.console_session_secret()` (a SettingsError outside the sandbox when it
is not set). Templates mask every value they print (`finalize` passes each through `tongban.codes.mask_text`);
only machine values a view marks `verbatim` (hashes, message ids) are printed as they are."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware

from tongban.codes import mask_text

from . import auth, views
from .users import get_user

HERE = Path(__file__).resolve().parent
SECURITY_HEADERS = {
    # Nothing but this site's stylesheet; no script is needed by any page.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Verbatim(str):
    """A machine value (hash, message id, signature) printed unmasked: it holds no personal data, and masking
    would garble it (a run of digits in a hex hash can look like a phone number)."""


def _finalize(value):
    if value is None:
        return ""
    if isinstance(value, (Verbatim, Markup)):
        return value
    if isinstance(value, str):
        return mask_text(value)
    return value


def templates() -> Jinja2Templates:
    found = Jinja2Templates(directory=str(HERE / "templates"))
    found.env.finalize = _finalize
    found.env.filters["verbatim"] = lambda v: Verbatim("" if v is None else str(v))
    found.env.globals["csrf_field"] = auth.CSRF_FIELD
    return found


def create_app(settings=None, store=None) -> FastAPI:
    from tongban.settings import load
    from tongban.store import open_store

    settings = settings or load()
    secret = settings.console_session_secret()
    store = store or open_store(settings.db_url)
    app = FastAPI(title="tongban console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings, app.state.store, app.state.templates = settings, store, templates()
    app.state.throttle = auth.Throttle()
    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie=auth.SESSION_COOKIE,
                       max_age=auth.SESSION_SECONDS, same_site="strict", https_only=not settings.is_sandbox)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(auth.LoginRequired)
    async def _login_required(_request: Request, exc: auth.LoginRequired):
        return auth.login_redirect(exc.next_path)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        name = request.session.get("user") if "session" in request.scope else None
        user = get_user(store, name) if name else None
        return app.state.templates.TemplateResponse(
            request, "error.html", {"status": exc.status_code, "message": str(exc.detail), "user": user,
                                    "csrf": request.session.get("csrf", "") if user else ""},
            status_code=exc.status_code)

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(auth.router)
    app.include_router(views.router)
    return app

