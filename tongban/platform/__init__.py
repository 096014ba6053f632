"""The 渝快办 platform seam: one client (`PlatformClient`) for every platform endpoint, one signing path
(`auth`, TB-HMAC-SHA256-2, docs/platform-auth.md), one retry policy (tongban.retry), one set of errors."""
from .client import (
    CASE_EVENTS_PATH, CASES_PATH, CATALOG_PATH, NUMBERING_PATH, RESOLVE_USER_PATH, SEALED_DOCUMENTS_PATH, STATS_PATH,
    PlatformClient,
)
from .errors import PlatformRejected, PlatformTransient, ReceiptInvalid, SealRejected

__all__ = [
    "CASE_EVENTS_PATH", "CASES_PATH", "CATALOG_PATH", "NUMBERING_PATH", "RESOLVE_USER_PATH", "SEALED_DOCUMENTS_PATH", "STATS_PATH",
    "PlatformClient", "PlatformRejected", "PlatformTransient", "ReceiptInvalid", "SealRejected",
]
