"""A process-wide guard: every log record's message is passed through `codes.mask_text` when it is made.

Modules mask what they log themselves, but libraries do not: zeep logs whole SOAP responses at DEBUG,
names and ID numbers included. A log-record factory sees every record any logger emits (only records at
an enabled level are ever made, so disabled DEBUG costs nothing), which a filter on one logger or one
handler cannot. Tracebacks are formatted later by handlers and are not covered: exception texts in tongban
carry masked values already (tongban.codes rules never repeat the value).
"""
from __future__ import annotations

import logging

from tongban.codes import mask_text

_installed = False


def install() -> None:
    """Idempotent; wraps whatever factory is installed (pytest's, Airflow's …)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def masking_factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is the logging module's to report
            return record
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return record

    logging.setLogRecordFactory(masking_factory)
    _installed = True
