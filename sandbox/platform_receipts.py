"""The mock 渝快办 platform's signed case receipts (回执): a compact JWS (ES256) by its receipt certificate.

The key pair is `platform-receipt.key.pem` / `platform-receipt.pem` from the sandbox CA (`tongban certs init`,
SANDBOX ONLY), the same certificate that seals its sealed-document receipts. The JWS payload is the receipt's fields
(everything but the HMAC `signature` of the call protocol and `jws` itself); its `x5c` header carries the
certificate and the CA. The fault knob `receipt_key` (POST /_sandbox/faults) makes the platform sign with
- "wrong": a fresh key nobody knows, while still presenting the platform's certificate (the signature fails);
- "untrusted": the untrusted sandbox CA's signer (a valid signature by a certificate tongban does not accept).
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tongban.audit import jws
from tongban.seal.ca import generate_key, load_certificate, load_private_key

TYP = "yukuaiban-receipt+jws"
RECEIPT_KEYS = ("platform", "wrong", "untrusted")


class ReceiptSigner:
    def __init__(self, certs_dir: str | Path):
        self.certs_dir = Path(certs_dir)
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[Any, list]] = {}

    def _key(self, which: str):
        with self._lock:
            if which not in self._keys:
                d = self.certs_dir
                platform = (load_private_key(d / "platform-receipt.key.pem"),
                            [load_certificate(d / "platform-receipt.pem"), load_certificate(d / "root-ca.pem")])
                if which == "platform":
                    self._keys[which] = platform
                elif which == "wrong":
                    self._keys[which] = (generate_key("ec"), platform[1])
                else:
                    self._keys[which] = (load_private_key(d / "untrusted-signer.key.pem"),
                                         [load_certificate(d / "untrusted-signer.pem"),
                                          load_certificate(d / "untrusted-ca.pem")])
            return self._keys[which]

    def sign(self, fields: dict[str, Any], which: str = "platform") -> str:
        key, chain = self._key(which)
        return jws.sign(fields, key, chain, typ=TYP)


def receipt_signer_for(certs_dir: str | Path | None) -> ReceiptSigner | None:
    """The platform's receipt signer when it has a sandbox CA folder (None: receipts carry only the HMAC)."""
    return ReceiptSigner(certs_dir) if certs_dir is not None else None
