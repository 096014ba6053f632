"""A messy legacy REST system, as real ones are: a login that hands out short-lived tokens, error codes inside
HTTP 200, a page-size cap, a total count, an exclusive 更新时间 filter in its own format, and quirks on demand.

    POST {login_path}       {"username": …, "password": …} (JSON or form)
                            → {code: ok, result: {token, expiresIn}}  |  {code: "4010", msg: "用户名或密码错误"}
    GET  {list_path}?{page_param}=p&{size_param}=s&{since_param}=YYYYmmddHHMMSS   ({token_header}: <token>)
                            → {code: ok, msg: "成功", result: {totalCount: N, pageNo: p, list: [...]}}
                            | {code: busy, msg: "系统繁忙"} | {code: reauth, msg: "令牌已过期"} | {code: fatal, msg: …}

Every key and code is the `Layout`'s (so that one server can play several departments); the records are a
`LegacyWorld`'s with the layout's field names, their 更新时间 written in `since_format`. `Quirks` turn the
mess up: busy answers at random or on every n-th call, tokens that expire after some calls or seconds, a 401
that revokes every token, a cap on the page size, records held back (written late, in the same second as the
newest one shown), a fatal error on a chosen call. `server.stats` counts what happened, for tests.

Run it: `uvicorn sandbox.messy_rest:app_from_env --factory --port 8711` (TONGBAN_MESSY_CASES, _SEED,
_USER, _PASSWORD, _BUSY_SHARE, _PAGE_CAP, _TOKEN_CALLS).
"""
from __future__ import annotations

import os
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sandbox.legacy_world import TIME_FORMAT, LegacyWorld


@dataclass
class Layout:
    """One department's API: paths, parameter names, envelope keys and codes, record field names."""

    login_path: str = "/auth/login"
    login_user_key: str = "username"
    login_password_key: str = "password"
    token_header: str = "X-Auth-Token"
    token_prefix: str = ""                 # e.g. "Bearer " when the token goes in Authorization
    list_path: str = "/api/cases"
    page_param: str = "pageNo"
    size_param: str = "pageSize"
    since_param: str = "gxsjStart"
    since_format: str = "%Y%m%d%H%M%S"
    code_key: str = "code"
    message_key: str = "msg"
    result_key: str = "result"
    list_key: str = "list"
    total_key: str = "totalCount"
    token_key: str = "token"
    expires_key: str = "expiresIn"
    ok: str = "0000"
    busy: str = "9999"
    reauth: str = "4011"
    bad_login: str = "4010"
    fatal: str = "5001"
    rename: dict[str, str] = field(default_factory=dict)   # world field → this system's field
    recode: Callable[[dict], dict] | None = None            # a last touch on each record (item codes …)


@dataclass
class Quirks:
    busy_share: float = 0.0            # share of data calls answered `busy`, at random (seeded)
    busy_every: int = 0                # … or every n-th data call
    seed: int = 1
    page_cap: int | None = None        # the server sends at most this many records per page
    token_calls: int | None = None     # a token answers `reauth` after this many data calls
    token_seconds: float = 600.0       # lifetime of a token (also what expiresIn says)
    revoke_every: int = 0              # every n-th data call: HTTP 401 and every token forgotten
    fatal_on_call: int | None = None   # that data call (1-based) answers the fatal code
    fatal_message: str = "数据库连接失败"
    total_extra: int = 0               # the total claims this many records more than the query returns
    held_back: set[str] = field(default_factory=set)   # keys not shown yet (their transaction is not committed)
    same_time_as: dict[str, str] = field(default_factory=dict)   # key → key whose 更新时间 it shares (a tie)


@dataclass
class Stats:
    logins: int = 0
    bad_logins: int = 0
    data_calls: int = 0
    busy: int = 0
    reauth: int = 0
    revoked: int = 0
    expired_by_time: int = 0


class MessyServer:
    def __init__(self, world: LegacyWorld, *, layout: Layout | None = None, quirks: Quirks | None = None,
                 username: str = "cl_sync", password: str = "sandbox-password",
                 clock: Callable[[], float] = time.monotonic):
        self.world, self.layout, self.quirks = world, layout or Layout(), quirks or Quirks()
        self.username, self.password, self.clock = username, password, clock
        self.stats = Stats()
        self.tokens: dict[str, dict[str, float]] = {}   # token → {"issued": t, "calls": n}
        self.rng = random.Random(self.quirks.seed)
        self.tie_with: str | None = None                 # 更新时间 given to held-back records

    # --- what the system shows -----------------------------------------------------------------------
    def _record(self, record: dict, times: dict[str, str]) -> dict:
        out = dict(record)
        if self.tie_with is not None and out["ywh"] in self.quirks.held_back:
            out["gxsj"] = self.tie_with
        if out["ywh"] in self.quirks.same_time_as:
            out["gxsj"] = times[self.quirks.same_time_as[out["ywh"]]]
        out["gxsj"] = datetime.strptime(out["gxsj"], TIME_FORMAT).strftime(self.layout.since_format)
        out = {self.layout.rename.get(k, k): v for k, v in out.items()}
        return self.layout.recode(out) if self.layout.recode else out

    def visible(self, since: str | None = None) -> list[dict]:
        """Records changed after `since` (exclusive, in since_format), sorted by 更新时间 then key."""
        held = self.quirks.held_back
        world = self.world.records()
        times = {r["ywh"]: r["gxsj"] for r in world}
        records = [self._record(r, times) for r in world if self.tie_with is not None or r["ywh"] not in held]
        if since:
            records = [r for r in records if r[self.layout.rename.get("gxsj", "gxsj")] > since]
        key, wm = self.layout.rename.get("ywh", "ywh"), self.layout.rename.get("gxsj", "gxsj")
        return sorted(records, key=lambda r: (r[wm], r[key]))

    def hold_back(self, key: str) -> None:
        """Hide `key` now; once released it carries the 更新时间 of the newest record shown meanwhile."""
        self.quirks.held_back.add(key)
        self.tie_with = None

    def release(self) -> None:
        """The late transaction commits, in the same second as the newest record shown before."""
        shown = [r for r in self.world.records() if r["ywh"] not in self.quirks.held_back]
        self.tie_with = max(r["gxsj"] for r in shown)

    def total(self) -> int:
        return len(self.visible())

    # --- the answers ----------------------------------------------------------------------------------
    def answer(self, code: str, message: str, result: Any = None) -> dict:
        body = {self.layout.code_key: code, self.layout.message_key: message}
        if result is not None:
            body[self.layout.result_key] = result
        return body

    def login(self, form: dict) -> dict:
        lay = self.layout
        if form.get(lay.login_user_key) != self.username or form.get(lay.login_password_key) != self.password:
            self.stats.bad_logins += 1
            return self.answer(self.layout.bad_login, "用户名或密码错误")
        self.stats.logins += 1
        token = secrets.token_hex(12)
        self.tokens[token] = {"issued": self.clock(), "calls": 0}
        return self.answer(self.layout.ok, "成功", {self.layout.token_key: token,
                                                    self.layout.expires_key: self.quirks.token_seconds})

    def cases(self, token: str | None, query: dict) -> tuple[int, dict]:
        q, lay = self.quirks, self.layout
        self.stats.data_calls += 1
        n = self.stats.data_calls
        if q.revoke_every and n % q.revoke_every == 0:
            self.tokens.clear()
            self.stats.revoked += 1
            return 401, {"error": "unauthorized"}
        if token and lay.token_prefix and token.startswith(lay.token_prefix):
            token = token[len(lay.token_prefix):]
        state = self.tokens.get(token or "")
        if state is None:
            self.stats.reauth += 1
            return 200, self.answer(lay.reauth, "令牌无效")
        if self.clock() - state["issued"] >= q.token_seconds:
            self.stats.expired_by_time += 1
            self.stats.reauth += 1
            return 200, self.answer(lay.reauth, "令牌已过期")
        state["calls"] += 1
        if q.token_calls is not None and state["calls"] > q.token_calls:
            self.stats.reauth += 1
            return 200, self.answer(lay.reauth, "令牌已过期")
        if q.fatal_on_call is not None and n == q.fatal_on_call:
            return 200, self.answer(lay.fatal, q.fatal_message)
        if (q.busy_every and n % q.busy_every == 0) or (q.busy_share and self.rng.random() < q.busy_share):
            self.stats.busy += 1
            return 200, self.answer(lay.busy, "系统繁忙")
        try:
            page = max(1, int(query.get(lay.page_param, 1)))
            size = max(1, int(query.get(lay.size_param, 20)))
        except ValueError:
            return 200, self.answer("4000", "参数错误")
        if q.page_cap:
            size = min(size, q.page_cap)
        records = self.visible(query.get(lay.since_param) or None)
        chunk = records[(page - 1) * size: page * size]
        return 200, self.answer(lay.ok, "成功", {lay.total_key: len(records) + q.total_extra, "pageNo": page, lay.list_key: chunk})


def create_app(server: MessyServer) -> FastAPI:
    app = FastAPI(title="messy legacy REST (sandbox)", docs_url=None, redoc_url=None)
    app.state.server = server
    lay = server.layout

    # async handlers run one at a time on the event loop: the server's counters need no locks.
    @app.post(lay.login_path)
    async def login(request: Request):
        if request.headers.get("content-type", "").startswith("application/json"):
            form = await request.json()
        else:
            form = dict(await request.form())
        return server.login(form if isinstance(form, dict) else {})

    @app.get(lay.list_path)
    async def cases(request: Request):
        status, body = server.cases(request.headers.get(lay.token_header), dict(request.query_params))
        return JSONResponse(body, status_code=status)

    return app


def app_from_env() -> FastAPI:
    env = os.environ.get
    world = LegacyWorld(seed=int(env("TONGBAN_MESSY_SEED", "7")), cases=int(env("TONGBAN_MESSY_CASES", "500")),
                        bad_share=0.0)
    quirks = Quirks(busy_share=float(env("TONGBAN_MESSY_BUSY_SHARE", "0.14")),
                    page_cap=int(env("TONGBAN_MESSY_PAGE_CAP", "100")) or None,
                    token_calls=int(env("TONGBAN_MESSY_TOKEN_CALLS", "0")) or None)
    return create_app(MessyServer(world, quirks=quirks, username=env("TONGBAN_MESSY_USER", "cl_sync"),
                                  password=env("TONGBAN_MESSY_PASSWORD", "sandbox-password")))
