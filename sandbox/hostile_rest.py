"""Hostile legacy REST servers for probing the REST adapter's bounds (issue 20, item 4): every route misbehaves
in one way. All bind 127.0.0.1 on ephemeral ports.

    /cases?from=N          three records per page, a Link header to the next page (`/cases`, `/cases?from=3` …)
    /link-away             records, and a Link rel=next to another origin (the `elsewhere` URL)
    /next-away             records, and a body `next` URL to another origin
    /redirect-away         302 to another origin;  /redirect-home: 302 to /cases on the same origin
    POST /login-away       307 (method and body kept) to another origin
    /oversize?mb=N         N MiB of JSON without Content-Length (chunked); /announced: a huge Content-Length
    /endless               a chunked JSON array that never ends
    /same-page             the same full page whatever page is asked for
    /same-cursor           a new page each time, but always the same next cursor
    /link-loop             a Link rel=next to itself
    /pages-forever?page=N  a new full page each time, for ever
    /deep?depth=N          JSON nested N levels deep
    /bad-gzip              Content-Encoding: gzip over bytes that are not

`Recorder` is the other origin: it counts the requests it gets and keeps their headers (credentials must
never arrive there). `DripServer` is a raw socket server that answers one byte every `interval` seconds.
"""
from __future__ import annotations

import asyncio
import select
import socket
import threading
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route


def _page(start: int, n: int = 3) -> list[dict]:
    return [{"id": i} for i in range(start, start + n)]


def hostile_app(elsewhere: str = "http://127.0.0.1:9") -> Starlette:
    async def cases(request: Request):
        start = int(request.query_params.get("from", 0))
        headers = {"Link": f'</cases?from={start + 3}>; rel="next"'} if start + 3 < 9 else {}
        return JSONResponse({"items": _page(start)}, headers=headers)

    async def link_away(request: Request):
        return JSONResponse({"items": _page(0)}, headers={"Link": f'<{elsewhere}/steal?page=2>; rel="next"'})

    async def next_away(request: Request):
        return JSONResponse({"items": _page(0), "next": f"{elsewhere}/steal?page=2"})

    async def redirect_away(request: Request):
        return RedirectResponse(f"{elsewhere}/steal", status_code=302)

    async def login_away(request: Request):  # 307 keeps the method and the body: the password would go along
        return RedirectResponse(f"{elsewhere}/steal-login", status_code=307)

    async def redirect_home(request: Request):
        return RedirectResponse("/cases", status_code=302)

    async def oversize(request: Request):
        megabytes = int(request.query_params.get("mb", 64))

        async def body():
            yield b'{"items": ['
            chunk = b'{"id": 1, "pad": "' + b"x" * 65000 + b'"},'
            for _ in range(megabytes * 16):
                yield chunk
            yield b'{"id": 0}]}'

        return StreamingResponse(body(), media_type="application/json")

    async def announced(request: Request):
        return Response(b"{}", headers={"Content-Length": str(10 ** 12)}, media_type="application/json")

    async def endless(request: Request):
        async def body():
            yield b'{"items": ['
            # Endless for a reader that keeps reading; a reader that hangs up ends it (or it would hog the loop).
            while not await request.is_disconnected():
                yield b'{"id": 1},' * 4096
                await asyncio.sleep(0)

        return StreamingResponse(body(), media_type="application/json")

    async def same_page(request: Request):
        return JSONResponse({"items": _page(0)})

    served = {"same-cursor": 0}

    async def same_cursor(request: Request):
        served["same-cursor"] += 1
        return JSONResponse({"items": _page(served["same-cursor"] * 3), "next": "c-1"})

    async def link_loop(request: Request):
        return JSONResponse({"items": _page(int(request.query_params.get("x", 0)))},
                            headers={"Link": '</link-loop?x=1>; rel="next"'})

    async def pages_forever(request: Request):
        page = int(request.query_params.get("page", 1))
        return JSONResponse({"items": _page(page * 3)})

    async def bad_gzip(request: Request):
        return Response(b"this is not gzip", headers={"Content-Encoding": "gzip"}, media_type="application/json")

    async def deep(request: Request):
        depth = int(request.query_params.get("depth", 100000))
        return Response(b'{"items": ' + b"[" * depth + b"]" * depth + b"}", media_type="application/json")

    return Starlette(routes=[
        Route("/cases", cases), Route("/link-away", link_away), Route("/next-away", next_away),
        Route("/redirect-away", redirect_away), Route("/redirect-home", redirect_home),
        Route("/login-away", login_away, methods=["POST"]),
        Route("/oversize", oversize), Route("/announced", announced), Route("/endless", endless),
        Route("/same-page", same_page), Route("/same-cursor", same_cursor), Route("/link-loop", link_loop),
        Route("/pages-forever", pages_forever), Route("/deep", deep), Route("/bad-gzip", bad_gzip),
    ])


class Recorder:
    """Another origin: remembers every request it receives (method, path, headers)."""

    def __init__(self):
        self.requests: list[dict] = []

        async def anything(request: Request):
            self.requests.append({"method": request.method, "path": request.url.path,
                                  "headers": dict(request.headers)})
            return JSONResponse({"items": [{"id": "stolen"}]})

        self.app = Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST"])])


class DripServer:
    """Answers every connection with an HTTP response, one byte every `interval` seconds. `hangups` holds, for each
    connection the client gave up on, how many bytes of the body it had been sent by then (a client that waits for
    the drip instead of keeping its deadline hangs up after one byte or more, or never)."""

    RESPONSE = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{"items": []}\n'

    def __init__(self, interval: float = 8.0, headers_first: bool = False):
        self.interval, self.headers_first = interval, headers_first
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.connections = 0
        self.hangups: list[int] = []
        self.thread = threading.Thread(target=self._serve, name="drip", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "DripServer":
        self.thread.start()
        return self

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(1)
                conn.recv(65536)
                body = self.RESPONSE
                if self.headers_first:
                    split = body.index(b"\r\n\r\n") + 4
                    conn.sendall(body[:split])
                    body = body[split:]
                for sent, byte in enumerate(body):
                    if self._client_hung_up(conn):
                        self.hangups.append(sent)
                        return
                    if self.stopping.is_set():
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def _client_hung_up(self, conn: socket.socket) -> bool:
        """Wait out one interval; True as soon as the client closes its end (or when the server stops)."""
        deadline = time.monotonic() + self.interval
        while not self.stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([conn], [], [], min(left, 0.1))
            if readable and not conn.recv(1, socket.MSG_PEEK):
                return True
        return False

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()
