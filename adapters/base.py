"""The adapter seam: a protocol in, raw legacy records out.

An adapter knows its protocol (REST, SOAP, files) and nothing about cases. The pipeline gives it the
source section of a mapping file and a watermark, iterates the records it yields, and calls
`commit()` only after the broker has confirmed every published message (so a file moves to done/,
or a watermark advances, only when nothing can be lost) or `abort()` when anything failed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

if TYPE_CHECKING:
    from pydantic import BaseModel


class SourceError(Exception):
    """A permanent failure of the legacy system (bad credentials, SOAP fault, unreadable file)."""

    def __init__(self, system: str, message: str):
        super().__init__(f"{system}: {message}")
        self.system = system


class TransientSourceError(SourceError):
    """A failure worth retrying later (timeout, connection error, 5xx, 429)."""


@dataclass
class RawRecord:
    """One legacy record as the source gave it.

    `position` says where it came from (page and index, file and line) so that errors can name it.
    `error` is set when the record itself could not be read (a damaged CSV row): the pipeline
    quarantines it with that reason and goes on with the rest.
    """

    data: dict[str, Any]
    position: str
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Adapter:
    """Base class of every source adapter. Subclasses set `kind` and implement `fetch`."""

    kind: ClassVar[str] = ""

    settings_model: ClassVar[type[BaseModel] | None] = None
    """The declared settings of this adapter: a pydantic v2 model of the mapping file's `source:` section without its
    `adapter` key, with `model_config = ConfigDict(extra="forbid")` and a `description=` on every field.

    `tongban mapping check` validates `source:` against it (an unknown or misspelled key, a wrong type, a missing
    required setting → an error naming the file's line), `tongban adapter schema KIND` prints its JSON Schema and
    docs/adapters.md (`scripts/gen-adapter-docs`) documents every field. Nested settings are nested models; a choice of
    shapes (`auth: {type: bearer | login | …}`) is a discriminated union (`Field(discriminator="type")`), so that an
    error names the one variant the author meant. An example for the reference: `json_schema_extra={"examples": [{…}]}`
    in the model's config (else the docs quote a mapping file under mappings/ that uses the adapter).
    `None` (a third-party adapter that has not declared one): the settings are not checked, and `mapping check` says so.
    """

    def __init__(self, system: str, settings: dict[str, Any], **seams: Any):
        # `seams` carries test doubles (an httpx transport, a clock); production passes none.
        self.system = system
        self.settings = settings
        self.seams = seams

    def fetch(self, watermark: str | None) -> Iterator[RawRecord]:
        """Yield records changed since `watermark` (None: everything)."""
        raise NotImplementedError

    def commit(self) -> None:
        """Everything fetched is safely on the bus: finalise (move files to done/ …)."""

    def abort(self, reason: str) -> None:
        """Something failed after fetch: leave the source so that the next run sees the same records."""

    def close(self) -> None:
        """Release connections and files."""


def adapter_class(kind: str) -> type[Adapter]:
    """Find an adapter by kind: built-ins and third parties both register under `tongban.adapters`."""
    for ep in entry_points(group="tongban.adapters"):
        if ep.name == kind:
            return ep.load()
    known = sorted(ep.name for ep in entry_points(group="tongban.adapters"))
    raise LookupError(f"no adapter registered as {kind!r} (known: {', '.join(known) or 'none'})")
