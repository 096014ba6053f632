"""The console's pages. Each reads through the operations the CLI uses (ledger.trace, list_quarantine,
list_parked, replay_parked, replay_quarantine) and renders a template; every page needs a logged-in user, and
replay (a POST with the session's CSRF token) an operator."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select

from tongban.operator import actions as operations
from tongban.store.tables import ledger, parked

from . import chart, indicators, timeline
from .auth import CSRF_FIELD, check_csrf, csrf_token, current_user, operator
from .users import User

router = APIRouter()
LIST_LIMITS = (50, 200, 1000)


def page(request: Request, template: str, user: User, context: dict, status_code: int = 200) -> HTMLResponse:
    """A page for the logged-in user: the user, the CSRF token and a one-time notice are always there."""
    notice = request.session.pop("notice", None)
    return request.app.state.templates.TemplateResponse(
        request, template, {"user": user, "csrf": csrf_token(request), "notice": notice, **context},
        status_code=status_code)


def _recent_cases(store, limit: int = 15) -> list[dict]:
    """The cases with the latest receipts: somewhere for an auditor to start."""
    with store.read() as conn:
        rows = conn.execute(select(ledger.c.case_number, ledger.c.system, func.max(ledger.c.at).label("at"))
                            .where(ledger.c.hop == "receipt", ledger.c.case_number.is_not(None))
                            .group_by(ledger.c.case_number, ledger.c.system)
                            .order_by(func.max(ledger.c.at).desc()).limit(limit)).mappings()
        return [dict(r) for r in rows]


@router.get("/")
def home(_user: User = Depends(current_user)):
    return RedirectResponse("/search", status_code=303)


@router.get("/search")
def search(request: Request, q: str = "", user: User = Depends(current_user)):
    ident = q.strip()
    if ident and timeline.build(request.app.state.store, ident) is not None:
        from urllib.parse import urlencode

        return RedirectResponse(f"/timeline?{urlencode({'id': ident})}", status_code=303)
    return page(request, "search.html", user, {"q": ident, "missing": bool(ident),
                                               "recent": _recent_cases(request.app.state.store)},
                status_code=404 if ident else 200)


@router.get("/timeline")
def case_timeline(request: Request, id: str = "", user: User = Depends(current_user)):
    found = timeline.build(request.app.state.store, id.strip()) if id.strip() else None
    if found is None:
        raise HTTPException(404, f"nothing in the ledger for {id!r}: give a 办件编号, message id, idempotency key or "
                                 f"legacy case key")
    return page(request, "timeline.html", user, {"t": found, "evidence": evidence_available()})


def _list_args(limit: int) -> int:
    return limit if limit in LIST_LIMITS else LIST_LIMITS[0]


@router.get("/quarantine")
def quarantine_list(request: Request, system: str = "", stage: str = "", reason: str = "", since: str = "",
                    status: str = "open", limit: int = 50, user: User = Depends(current_user)):
    status = status if status in ("open", "replayed", "all") else "open"
    rows, total = operations.list_quarantine(request.app.state.store, system=system or None, stage=stage or None,
                                             reason=reason or None, since=since or None, status=status,
                                             limit=_list_args(limit))
    filters = {"system": system, "stage": stage, "reason": reason, "since": since, "status": status}
    return page(request, "quarantine.html", user, {"rows": rows, "total": total, "filters": filters,
                                                   "limit": _list_args(limit), "limits": LIST_LIMITS})


@router.get("/parked")
def parked_list(request: Request, system: str = "", reason: str = "", since: str = "", status: str = "open",
                limit: int = 50, user: User = Depends(current_user)):
    status = status if status in ("open", "replayed", "all") else "open"
    rows, total = operations.list_parked(request.app.state.store, system=system or None, reason=reason or None,
                                         since=since or None, status=status, limit=_list_args(limit))
    filters = {"system": system, "reason": reason, "since": since, "status": status}
    return page(request, "parked.html", user, {"rows": rows, "total": total, "filters": filters,
                                               "limit": _list_args(limit), "limits": LIST_LIMITS,
                                               "per_case": _open_parked_per_case(request.app.state.store, rows)})


def _open_parked_per_case(store, rows: list[dict]) -> dict[str, int]:
    numbers = {r["case_number"] for r in rows if r["case_number"]}
    if not numbers:
        return {}
    with store.read() as conn:
        return dict(conn.execute(select(parked.c.case_number, func.count())
                                 .where(parked.c.status == "open", parked.c.case_number.in_(numbers))
                                 .group_by(parked.c.case_number)).all())


def _case_of_parked(store, entry_id: int) -> list[int]:
    """The entry and every other open parked event of its case: the worker holds back a case's events while any of
    them is parked, so they are replayed together (in sequence order, as `tongban parked replay` does)."""
    with store.read() as conn:
        number = conn.execute(select(parked.c.case_number).where(parked.c.id == entry_id)).scalar()
        if not number:
            return [entry_id]
        return sorted({entry_id, *conn.execute(select(parked.c.id).where(parked.c.case_number == number,
                                                                         parked.c.status == "open")).scalars()})


def _replayed(request: Request, page: str, entry_id: int, replay) -> RedirectResponse:
    """`replay(store, bus, work)` on the configured bus (closed after), its outcome the notice on `page`'s list."""
    from tongban.bus import open_bus
    from tongban.bus.topology import cases_work

    settings = request.app.state.settings
    bus = open_bus(settings, announce=None)
    try:
        result = replay(request.app.state.store, bus, cases_work(settings.queue_prefix))
    finally:
        bus.close()
    request.session["notice"] = f"{page} #{entry_id}: {result}"
    return RedirectResponse(f"/{page}", status_code=303)


@router.post("/parked/{entry_id}/replay")
def parked_replay(request: Request, entry_id: int, token: str | None = Form(None, alias=CSRF_FIELD),
                  user: User = Depends(operator)):
    check_csrf(request, token)
    return _replayed(request, "parked", entry_id, lambda store, bus, work: operations.replay_parked(
        store, bus, ids=_case_of_parked(store, entry_id), work=work, actor=user.name))


@router.post("/quarantine/{entry_id}/replay")
def quarantine_replay(request: Request, entry_id: int, token: str | None = Form(None, alias=CSRF_FIELD),
                      user: User = Depends(operator)):
    check_csrf(request, token)
    return _replayed(request, "quarantine", entry_id, lambda store, bus, work: operations.replay_quarantine(
        store, ids=[entry_id], bus=bus, work=work, actor=user.name))


def _day(text: str, default: date) -> date:
    try:
        return date.fromisoformat(text) if text else default
    except ValueError:
        raise HTTPException(400, f"period: {text!r} is not a date (YYYY-MM-DD)") from None


@router.get("/indicators")
def indicators_page(request: Request, since: str = "", until: str = "", user: User = Depends(current_user)):
    today = datetime.now(timezone.utc).date()
    start, end = _day(since, today - timedelta(days=13)), _day(until, today)
    if end < start:
        raise HTTPException(400, f"period: until {end} is before since {start}")
    if (end - start).days > 366:
        raise HTTPException(400, "period: at most 366 days at once")
    settings = request.app.state.settings
    found = indicators.compute(request.app.state.store, settings.mappings_dir, start, end)
    series = {d.name: d.daily_delivered for d in found.departments if d.daily_delivered}
    daily = chart.stacked_bars(found.days, series, title="events delivered per day, by department")
    evaluations = {d.name: chart.distribution(d.evaluations, indicators.SATISFACTION, title=f"好差评 {d.name}")
                   for d in found.departments if d.evaluations}
    return page(request, "indicators.html", user, {"ind": found, "chart": daily, "evaluation_charts": evaluations,
                                                   "labels": indicators.SATISFACTION})


def evidence_available() -> bool:
    """Whether tongban.audit.evidence (the evidence packages) is installed in this tree."""
    try:
        from tongban.audit.evidence import export_package  # noqa: F401
    except ImportError:
        return False
    return True


@router.get("/evidence")
def evidence(request: Request, id: str = "", user: User = Depends(current_user)):
    """The case's evidence package (tongban.audit.evidence.export_package, as `tongban audit export ID` writes it),
    always masked; made in a private temporary folder that is removed once the download was sent."""
    import re
    import shutil
    import tempfile
    from pathlib import Path

    from starlette.background import BackgroundTask
    from starlette.responses import FileResponse

    if not evidence_available():
        raise HTTPException(404, "evidence packages are not part of this installation")
    from tongban.audit.evidence import EvidenceError, export_package
    from tongban.audit.keys import AuditKeyMissing

    ident = id.strip()
    if not ident:
        raise HTTPException(400, "evidence: give the identifier of a case (?id=…)")
    folder = Path(tempfile.mkdtemp(prefix="tongban-evidence-"))
    name = "evidence-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", ident)[:80] or "case") + ".zip"
    try:
        path = export_package(request.app.state.store, ident, folder / name, unmasked=False, actor=user.name)
    except (EvidenceError, AuditKeyMissing) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        missing = isinstance(exc, EvidenceError)
        raise HTTPException(404 if missing else 503, str(exc) if missing else
                            f"evidence packages cannot be signed: {exc}") from None
    return FileResponse(path, media_type="application/vnd.etsi.asic-e+zip", filename=path.name,
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))
