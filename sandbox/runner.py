"""Running the sandbox's mock servers on 127.0.0.1 (uvicorn in background threads)."""
from __future__ import annotations

import errno
import socket
import threading
import time

import uvicorn


class Server:
    """One ASGI app served by uvicorn on a background thread; port 0 picks a free port."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, name: str = "server"):
        self.app, self.host, self.name = app, host, name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            if exc.errno == errno.EADDRINUSE:  # name the service and the port, not just "Address already in use"
                raise OSError(errno.EADDRINUSE, f"port {port} on {host} ({name}) is already in use") from None
            raise
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"{self.name} did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            return True
        except OSError:
            return False
