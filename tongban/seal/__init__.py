"""Sealed-document exchange (电子印章): seal XML with a department certificate (XAdES), verify seals against a
trust store, and answer with a signed receipt. `tongban.seal.ca` is the SANDBOX ONLY certificate authority."""
from .licence import LicenceError, build_licence, parse_licence
from .receipt import ReceiptResult, build_receipt, verify_receipt
from .signer import Signer, SigningError, XadesSigner
from .truststore import TrustConfigError, TrustStore
from .verifier import REASONS, SealResult, verify_sealed

__all__ = [
    "REASONS", "LicenceError", "ReceiptResult", "SealResult", "Signer", "SigningError", "TrustConfigError", "TrustStore",
    "XadesSigner", "build_licence", "build_receipt", "parse_licence", "verify_receipt", "verify_sealed",
]
