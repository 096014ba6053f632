"""The mock 渝快办 platform's sealed-document API (POST /api/v1/sealed-documents).

The platform trusts nobody's word: it verifies each document's seal with its *own* trust store (party
"platform" in `<certs_dir>/trust.yaml`) and
- answers 422 `{"error": "seal", "reason": "<reason code>", "message": ...}` for a bad seal, storing nothing;
- otherwise stores the document and answers 200 with an XML receipt (`tongban.seal.build_receipt`) sealed with
  the platform's receipt certificate (`platform-receipt.pem` from the sandbox CA), acknowledging the SHA-256 of
  the bytes exactly as received.
The `Idempotency-Key` header works as on the case-event API: the same key and bytes get the original receipt
back; the same key with other bytes is 409.

Requests are signed like every /api call (`tongban.platform.auth.RequestVerifier`, shared with the platform's
other routes so a nonce is spent once across all of them). `GET /api/v1/sealed-documents`
lists what was received; `GET /_sandbox/sealed-documents` (unsigned, sandbox only) adds the refusal counts.
"""
from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from tongban.platform.auth import RequestVerifier
from tongban.seal import Signer, TrustStore, XadesSigner, build_receipt, verify_sealed
from tongban.seal.ca import PLATFORM_NAME
from tongban.seal.receipt import document_id_of
from adapters.safexml import MAX_SEALED_BYTES

MAX_IDEMPOTENCY_KEY = 200


@dataclass
class ReceivedDocument:
    idempotency_key: str
    document_id: str
    document_digest: str
    signer: str
    received_at: str
    document: bytes
    receipt: bytes

    def view(self) -> dict:
        return {"idempotency_key": self.idempotency_key, "document_id": self.document_id,
                "document_digest": self.document_digest, "signer": self.signer, "received_at": self.received_at,
                "receipt_digest": hashlib.sha256(self.receipt).hexdigest()}


class SealedInbox:
    """What the platform accepted (in memory: the sandbox platform is restarted with each demo)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: dict[str, ReceivedDocument] = {}
        self.refused: Counter[str] = Counter()

    def digests(self) -> set[str]:
        with self.lock:
            return {doc.document_digest for doc in self.received.values()}

    def views(self) -> list[dict]:
        with self.lock:
            return [doc.view() for doc in self.received.values()]


class _SealRefusal(Exception):
    def __init__(self, status: int, body: dict):
        self.status, self.body = status, body


class SealedDocumentService:
    def __init__(self, certs_dir: str | Path, *, trust: TrustStore | None = None, receipt_signer: Signer | None = None,
                 receiver: str = PLATFORM_NAME):
        self.certs_dir = Path(certs_dir)
        self._trust, self._signer, self.receiver = trust, receipt_signer, receiver
        self.inbox = SealedInbox()

    # Loaded per request, not at start-up: the sandbox may create its certificates after the platform starts,
    # and TrustStore.load is cached by file modification time, so a rewritten CRL takes effect at once.
    def trust(self) -> TrustStore:
        return self._trust or TrustStore.load(self.certs_dir / "trust.yaml", party="platform")

    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = XadesSigner(self.certs_dir / "platform-receipt.pem",
                                       self.certs_dir / "platform-receipt.key.pem")
        return self._signer

    def receive(self, document: bytes, key: str) -> bytes:
        digest = hashlib.sha256(document).hexdigest()
        seen = self._seen(key, digest)
        if seen is not None:
            return seen
        # Verify and seal outside the lock (the slow part); two racing deliveries of one key both do the work,
        # but only the first stores, and both get the stored receipt.
        result = verify_sealed(document, self.trust())
        if not result.ok:
            with self.inbox.lock:
                self.inbox.refused[result.reason] += 1
            raise _SealRefusal(422, {"error": "seal", "reason": result.reason, "message": result.message})
        receipt = build_receipt(document, result, self.signer(), receiver=self.receiver)
        with self.inbox.lock:
            seen = self._seen_locked(key, digest)
            if seen is not None:
                return seen
            self.inbox.received[key] = ReceivedDocument(
                key, document_id_of(result) or f"sha256:{digest}", digest, result.signer_subject or "",
                _received_at(receipt), document, receipt)
            return receipt

    def _seen(self, key: str, digest: str) -> bytes | None:
        with self.inbox.lock:
            return self._seen_locked(key, digest)

    def _seen_locked(self, key: str, digest: str) -> bytes | None:
        seen = self.inbox.received.get(key)
        if seen is not None and seen.document_digest != digest:
            raise _SealRefusal(409, {"error": "idempotency key reused with a different document"})
        return seen.receipt if seen is not None else None


def _received_at(receipt: bytes) -> str:
    from tongban.seal.receipt import RECEIPT_NS
    from adapters.safexml import parse_untrusted

    return parse_untrusted(receipt).findtext(f"{{{RECEIPT_NS}}}ReceivedAt") or ""


def sealed_router(service: SealedDocumentService, *, verifier: RequestVerifier) -> APIRouter:
    async def require_signature(request: Request) -> None:
        body = await request.body()  # cached by Starlette: the route reads the same bytes
        reason = verifier.check(request.method, request.url.path, request.url.query, request.headers, body)
        if reason:
            raise _SealRefusal(401, {"error": "unauthorized", "reason": reason})

    router = APIRouter(dependencies=[Depends(require_signature)])

    @router.post("/api/v1/sealed-documents")
    async def receive(request: Request):
        key = request.headers.get("Idempotency-Key")
        if not key:
            raise _SealRefusal(400, {"error": "missing Idempotency-Key header"})
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise _SealRefusal(400, {"error": f"Idempotency-Key longer than {MAX_IDEMPOTENCY_KEY} characters"})
        document = await request.body()
        if len(document) > MAX_SEALED_BYTES:
            raise _SealRefusal(413, {"error": f"document larger than {MAX_SEALED_BYTES} bytes"})
        receipt = await run_in_threadpool(service.receive, document, key)
        return Response(receipt, media_type="application/xml")

    @router.get("/api/v1/sealed-documents")
    def received():
        return {"received": service.inbox.views()}

    return router


def mount_sealed_documents(app: FastAPI, certs_dir: str | Path, *, access_key: str, secret: str,
                           verifier: RequestVerifier | None = None, **service_options) -> SealedDocumentService:
    """Add the sealed-document API to the mock platform `app`; the service is `app.state.sealed`. Pass the
    platform's `verifier` to share its nonce memory (a verifier of its own is made from the key and secret)."""
    service = SealedDocumentService(certs_dir, **service_options)
    app.state.sealed = service

    @app.exception_handler(_SealRefusal)
    async def _refused(_: Request, refusal: _SealRefusal) -> JSONResponse:
        return JSONResponse(refusal.body, refusal.status)

    app.include_router(sealed_router(service, verifier=verifier or RequestVerifier(access_key, secret)))

    @app.get("/_sandbox/sealed-documents")
    def sandbox_view():  # unsigned on purpose, like the other /_sandbox controls
        return {"received": service.inbox.views(), "refused": dict(service.inbox.refused)}

    return service
