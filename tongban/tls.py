"""One TLS client context for every outgoing HTTPS client: the platform (渝快办), legacy REST systems, district sinks.

Making a context loads the whole CA bundle (certifi's, or SSL_CERT_FILE / SSL_CERT_DIR, as httpx reads them): 20-40 ms
of CPU each time. A client per legacy run, per district sink and per bundle member paid that again and again (a fifth
of the sandbox demo's main thread, and twice per REST adapter). An `ssl.SSLContext` is safe to share between
connections and threads, and nothing in tongban changes it once made."""
from __future__ import annotations

import functools
import ssl

import httpx


@functools.lru_cache(maxsize=1)
def client_context() -> ssl.SSLContext:
    """The shared context: certificates verified against the CA bundle httpx would use."""
    return httpx.create_ssl_context()
