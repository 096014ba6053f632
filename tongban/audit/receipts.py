"""Platform-signed case receipts (回执): checked before the delivery worker acks, kept verbatim in the ledger.

The 渝快办 platform signs each case receipt as a compact JWS, ES256, its certificate chain in `x5c`
(tongban.audit.jws; the choice is explained in docs/audit.md). The receipt JSON carries the JWS in `jws`; the JWS
payload is the receipt's fields (all but `signature`, the HMAC of the call protocol, and `jws`). A receipt is
accepted only when:
- the JWS verifies under the certificate in its `x5c` header,
- that certificate is one the trust configuration names as the platform's receipt signer (trust.yaml, party
  `platform_receipts`, key `signer`) and chains to that party's CAs, unrevoked (tongban.seal.truststore),
- the signed fields are exactly the receipt's fields, name our idempotency key and the SHA-256 of the event sent.
Anything else is a `ReceiptSignatureInvalid`; the worker parks the message with reason `receipt_signature`.

Where the trust configuration names no receipt signer: in the sandbox, a `platform-receipt.pem` beside trust.yaml is
the signer (sandbox CA folders made before this party existed); otherwise receipts are not checked in the sandbox
(one warning), and in production every receipt is refused — tongban does not ack what it cannot verify. In the
sandbox only, a receipt with no signature at all (a mock platform started without a CA) is let through with a
warning; a signature that is there and does not verify is refused everywhere.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tongban.audit import jws
from tongban.audit.keys import trust_config
from tongban.bus.envelope import content_digest
from tongban.seal.truststore import CertificateProblem, TrustConfigError, TrustStore, describe
from tongban.settings import Settings

log = logging.getLogger("tongban.receipts")

PARTY = "platform_receipts"
REASON = "receipt_signature"
_UNSIGNED_FIELDS = ("signature", "jws")


class ReceiptSignatureInvalid(ValueError):
    """The receipt is not signed by the platform's receipt certificate, or says something else than it signed."""


_warned = False


def _warn_unsigned() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("sandbox: the platform sent a receipt with no signature (a mock platform without a CA); accepted "
                    "in the sandbox only")


def _clock() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


# A certificate chain that passed is trusted again without the chain check for at most this long, and never past the
# validity of any certificate in it: the worker checks one receipt per event, all by the same certificate.
PASS_KEPT_SECONDS = 300.0
_PASSES_KEPT = 16


@dataclass
class ReceiptVerifier:
    trust: TrustStore | None
    signers: tuple[x509.Certificate, ...]
    refusal: str | None = None  # set: every receipt is refused with this reason (production, nothing configured)
    sandbox: bool = False       # a receipt with no signature at all passes (a sandbox platform without a CA)
    # (leaf DER, intermediates' DER …) -> (not before, not after) of a pass: the certificate check's answer, kept
    _passes: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _signer_prints: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._signer_prints = frozenset(_fingerprint(c) for c in self.signers)
        self._passes_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Path, *, sandbox: bool = True) -> "ReceiptVerifier | None":
        config = Path(config)
        try:
            parties = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("parties") or {}
        except FileNotFoundError:
            parties = {}
        entry = parties.get(PARTY) or {}
        base = config.resolve().parent
        signer_files = [base / p for p in entry.get("signer") or []]
        party = PARTY
        if not signer_files and sandbox and (base / "platform-receipt.pem").is_file() and "default" in parties:
            signer_files, party = [base / "platform-receipt.pem"], "default"
        if sandbox and not all(p.is_file() for p in signer_files):
            signer_files = []  # the sandbox CA these name was never made (`tongban certs init`)
        if not signer_files:
            if sandbox:
                log.warning("platform receipts are not signature-checked: %s names no party %r with a 'signer' "
                            "that exists (run `tongban certs init`)", config, PARTY)
                return None
            return cls(None, (), f"no platform receipt certificate is configured ({config}: party {PARTY!r}, key "
                                 f"'signer'): receipts cannot be verified")
        try:
            trust = TrustStore.load(config, party=party)
            signers = tuple(x509.load_pem_x509_certificate(p.read_bytes()) for p in signer_files)
        except (OSError, ValueError, TrustConfigError) as exc:
            if sandbox:
                raise
            return cls(None, (), f"the platform receipt trust configuration cannot be loaded: {exc}")
        return cls(trust, signers, sandbox=sandbox)

    @classmethod
    def from_settings(cls, settings: Settings) -> "ReceiptVerifier | None":
        return cls.from_config(trust_config(settings), sandbox=settings.is_sandbox)

    def _accept(self, leaf: x509.Certificate, intermediates: list[x509.Certificate]) -> None:
        """The leaf must be the platform's receipt certificate and chain, unrevoked and within its validity, to the
        party's CAs. A pass is kept (by the certificates' bytes) until the earliest expiry in the chain or for
        PASS_KEPT_SECONDS, whichever comes first; a refusal is never kept, so it is checked afresh every time."""
        key = tuple(c.public_bytes(serialization.Encoding.DER) for c in (leaf, *intermediates))
        checked_at = _clock()
        kept = self._passes.get(key)
        if kept is not None and kept[0] <= checked_at.timestamp() < kept[1]:
            return
        if _fingerprint(leaf) not in self._signer_prints:
            raise jws.JWSInvalid(f"signed by {describe(leaf)}, which is not the platform's receipt certificate")
        try:
            chain = self.trust.validate(leaf, intermediates, now=checked_at)
        except CertificateProblem as exc:
            raise jws.JWSInvalid(f"{exc.reason}: {exc}") from None
        until = min([checked_at.timestamp() + PASS_KEPT_SECONDS,
                     *(c.not_valid_after_utc.timestamp() for c in (*chain, leaf, *intermediates))])
        with self._passes_lock:
            if len(self._passes) >= _PASSES_KEPT:
                self._passes.pop(next(iter(self._passes)))
            self._passes[key] = (checked_at.timestamp(), until)

    def check(self, receipt: dict[str, Any], event: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """The signed receipt fields, or ReceiptSignatureInvalid saying what is wrong."""
        if self.refusal:
            raise ReceiptSignatureInvalid(self.refusal)
        token = receipt.get("jws")
        if not token and self.sandbox:
            _warn_unsigned()
            return {}
        if not token:
            raise ReceiptSignatureInvalid("the receipt carries no platform signature (field 'jws' is missing)")
        try:
            signed = jws.verify(token, self._accept).payload
        except jws.JWSInvalid as exc:
            raise ReceiptSignatureInvalid(str(exc)) from None
        plain = {k: v for k, v in receipt.items() if k not in _UNSIGNED_FIELDS}
        for name in sorted(set(plain) | set(signed)):
            if plain.get(name) != signed.get(name):
                raise ReceiptSignatureInvalid(f"receipt field {name!r} differs from what the platform signed")
        if signed.get("idempotency_key") != idempotency_key:
            raise ReceiptSignatureInvalid("the signed receipt names another idempotency key")
        if signed.get("digest") != content_digest(event):
            raise ReceiptSignatureInvalid("the signed receipt acknowledges another event (SHA-256 differs)")
        return signed
