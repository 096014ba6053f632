"""The submit side of the adapter seam: one application in, the legacy system's own key out.

The fetch side (adapters/base.py) reads cases out of a legacy system; a bundle (一件事一次办, tongban.bundle) also has
to put applications *into* one. A `Submitter` knows its protocol and nothing about bundles or cases: it is given a
`Submission` (tongban's reference, the 实施编码 and the fields the legacy system wants) and answers the legacy
system's key for the case it opened, which the ordinary ingest later reports back.

Every submitter keeps these promises (the conformance kit, tongban.conformance.SubmitterConformance, checks them):
- **idempotent**: the same `reference` submitted again opens no second case and answers the same key (the
  reference travels as an `Idempotency-Key` header, a file name, a SOAP field — whatever the protocol offers);
- **errors named**: a permanent refusal is a `SourceError` naming the system and quoting the legacy message; a
  transient one (timeout, connection error, 5xx, 429, a busy envelope) is retried inside the call with the one retry
  policy (tongban.retry) and then a `TransientSourceError`, so the caller's bus retries later;
- **hostile answers refused**: an answer too large, too deep, not JSON/XML, or without a usable key is a
  `SourceError`, never a key.

Submitters are found by the `submit:` section's `adapter` kind: the built-ins below, and third parties under the
`tongban.submitters` entry point. The section is validated against `settings_model` (pydantic, extra="forbid").
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

from adapters.base import SourceError

if TYPE_CHECKING:
    from pydantic import BaseModel

BUILT_IN = {"rest": "adapters.rest_submit:RestSubmitter", "files": "adapters.files_submit:FileSubmitter",
            "soap": "adapters.soap_submit:SoapSubmitter"}
SAFE_KEY = re.compile(r"[A-Za-z0-9_.:#\-\u4e00-\u9fff]{1,200}\Z")
REFERENCE = re.compile(r"[A-Za-z0-9_.\-]{1,120}\Z")


@dataclass
class Submission:
    """One member application: `reference` is tongban's own key for it (stable across resubmissions)."""

    reference: str
    item_code: str
    fields: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not REFERENCE.match(self.reference):
            raise ValueError(f"submission reference {self.reference!r}: letters, digits, _ . - only, at most 120")


@dataclass
class SubmitReceipt:
    legacy_key: str  # the legacy system's key of the case it opened (its ingest reports the case under it)
    detail: dict[str, Any] = field(default_factory=dict)


def checked_key(system: str, value: Any, where: str) -> str:
    """A legacy key from an answer, or a SourceError: a key is short plain text, never an object or markup."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not SAFE_KEY.match(value):
        shown = repr(value)[:80]
        raise SourceError(system, f"{where}: the answer carries no usable case key ({shown}); "
                                  "a key is 1–200 letters, digits or _ . : # -")
    return value


class Submitter:
    """Base class of every submitter. Subclasses set `kind`, `settings_model` and implement `submit`."""

    kind: ClassVar[str] = ""
    settings_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, system: str, settings: dict[str, Any], **seams: Any):
        self.system = system
        self.settings = settings
        self.seams = seams  # test doubles (an httpx transport, a sleep); production passes none

    def submit(self, submission: Submission) -> SubmitReceipt:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


def submitter_class(kind: str) -> type[Submitter]:
    if kind in BUILT_IN:
        module, name = BUILT_IN[kind].split(":")
        return getattr(import_module(module), name)
    for ep in entry_points(group="tongban.submitters"):
        if ep.name == kind:
            return ep.load()
    known = sorted({*BUILT_IN, *(ep.name for ep in entry_points(group="tongban.submitters"))})
    raise LookupError(f"no submitter registered as {kind!r} (known: {', '.join(known)})")
