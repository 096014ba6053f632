"""Hardened XML parsing shared by the whole project (DESIGN.md promise 7: hostile input is harmless).

Every XML document that enters tongban (SOAP responses, file drops, national batches, sealed documents and
receipts) is parsed here or through `zeep_settings()`; this is the one hardened XML module:

- no DTD is loaded, no entity is expanded, nothing is fetched from the network or the local disk;
- a document that *declares* a DOCTYPE or ENTITY is rejected outright (`HostileXMLError`): no legitimate
  government exchange format needs one, and rejecting is clearer than silently parsing around it;
- sizes are bounded before parsing (`XMLTooLargeError`);
- broken documents raise `MalformedXMLError` naming the line.

- a streamed element (one record of a file drop) can be bounded too (`XMLElementTooLargeError`);
- signed documents (`parse_untrusted`, tongban.seal) are held to the strictest reading: a byte scan refuses
  DOCTYPE/ENTITY before libxml2 sees them, any entity reference left in the tree is refused, and the bound is
  `MAX_SEALED_BYTES`; `thread_parser()` is the hardened parser libraries that parse again (signxml) are given.

All derive from `XMLRejected` (a ValueError) so callers can catch one thing.
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import BinaryIO, Iterator

from lxml import etree

# A generous default: the largest legitimate single documents (SOAP pages, national batches) are a few MB.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
# A sealed licence or receipt is a few kilobytes; 5 MiB leaves room for face data without letting a sender
# exhaust memory.
MAX_SEALED_BYTES = 5 * 1024 * 1024

# Passed to every lxml parser we create. `huge_tree=False` keeps libxml2's own depth/text-size limits on.
_HARDENED = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
)


class XMLRejected(ValueError):
    """An XML document tongban refuses to read."""


class HostileXMLError(XMLRejected):
    """The document declares a DOCTYPE or entities (billion laughs, XXE, external DTD …)."""


class XMLTooLargeError(XMLRejected):
    """The document is larger than the bound its caller set."""


class MalformedXMLError(XMLRejected):
    """The document is not well-formed XML (truncated, not XML at all …)."""


class XMLElementTooLargeError(XMLRejected):
    """One streamed element (a record) is larger than the bound its caller set; the rest is not read."""


class _ElementBudget:
    """A file wrapper for iterparse that refuses to read more than `limit` bytes between two yielded elements:
    the parser holds the element being built in memory, so this bounds the memory one record can take."""

    def __init__(self, stream, limit: int, name: str):
        self.stream, self.limit, self.name = stream, limit, name
        self.used = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.used += len(data)
        if self.used > self.limit:
            raise XMLElementTooLargeError(f"{self.name}: one record is larger than {self.limit} bytes; "
                                          f"the rest of the file was not read")
        return data


class _NoExternalResolver(etree.Resolver):
    """Belt and braces: should libxml2 ever ask to load anything, refuse with an error instead of reading it."""

    def resolve(self, url, pubid, context):  # noqa: D401 - lxml API
        raise HostileXMLError(f"XML tried to load an external resource ({url!r}); external resources are forbidden")


def parser() -> etree.XMLParser:
    """An lxml parser with entities, DTDs and network access switched off."""
    p = etree.XMLParser(**_HARDENED)
    p.resolvers.add(_NoExternalResolver())
    return p


_local = threading.local()  # lxml parsers must not be shared between threads


def thread_parser() -> etree.XMLParser:
    """This thread's hardened parser, for a library that parses again what we parsed (signxml's verify)."""
    p = getattr(_local, "parser", None)
    if p is None:
        p = _local.parser = parser()
    return p


def zeep_settings(**overrides):
    """zeep settings with the same protection (forbid DTDs, entities and external references)."""
    from zeep import Settings

    options = dict(forbid_dtd=True, forbid_entities=True, forbid_external=True, xml_huge_tree=False)
    options.update(overrides)
    return Settings(**options)


def _reject_declarations(docinfo, source: str) -> None:
    # lxml exposes the DOCTYPE even though nothing of it was loaded or expanded; its presence is the tell.
    if (docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None
            or docinfo.system_url or docinfo.public_id):
        raise HostileXMLError(
            f"{source}: XML declares a DOCTYPE/ENTITY ({docinfo.doctype or 'internal subset'}); "
            "DTDs and entity declarations are forbidden (entity expansion / external entity attacks)"
        )


def _malformed(source: str, exc: etree.XMLSyntaxError) -> MalformedXMLError:
    line = getattr(exc, "lineno", None) or (exc.position[0] if getattr(exc, "position", None) else "?")
    return MalformedXMLError(f"{source}: not well-formed XML at line {line}: {exc.msg if hasattr(exc, 'msg') else exc}")


def parse_bytes(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, source: str = "XML document") -> etree._Element:
    """Parse a whole document held in memory and return its root element."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > max_bytes:
        raise XMLTooLargeError(f"{source}: {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        root = etree.fromstring(data, parser())
    except etree.XMLSyntaxError as exc:
        # An entity reference to an undeclared/unloaded entity also lands here; say what it was when we can.
        if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
            raise HostileXMLError(
                f"{source}: XML declares a DOCTYPE/ENTITY; DTDs and entity declarations are forbidden"
            ) from None
        raise _malformed(source, exc) from None
    _reject_declarations(root.getroottree().docinfo, source)
    return root


def parse_untrusted(data: bytes, *, max_bytes: int = MAX_SEALED_BYTES,
                    source: str = "signed document") -> etree._Element:
    """Parse a signed document (licence, decision, receipt) and return its root element, or raise XMLRejected
    naming the rule broken. Stricter than `parse_bytes`: bytes only, DOCTYPE/ENTITY refused by a byte scan before
    parsing, and no entity reference may remain in the tree."""
    if not isinstance(data, (bytes, bytearray)):
        raise XMLRejected(f"{source}: expected XML bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise XMLTooLargeError(f"{source}: {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    # The cheap scan refuses the common attacks (billion laughs, external entities) before libxml2 sees them;
    # the docinfo check in parse_bytes catches declarations in other encodings (UTF-16 …).
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise HostileXMLError(f"{source}: XML declares a DOCTYPE/ENTITY; DTDs and entity declarations are forbidden")
    root = parse_bytes(data, max_bytes=max_bytes, source=source)
    for _ in root.iter(etree.Entity):
        raise HostileXMLError(f"{source}: entity references are forbidden")
    return root


def iterparse_file(
    path: str | os.PathLike | BinaryIO,
    tag: str | None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
    max_element_bytes: int | None = None,
) -> Iterator[etree._Element]:
    """Stream the elements named `tag` (`Record`, `{ns}Record` or `{*}Record`) from a file in constant memory.

    `path` may also be an open binary file (the file-drop adapter opens without following links); `name` is what
    messages call it. Each element is complete when yielded and is cleared (with its already-seen siblings) as
    soon as the caller asks for the next one, so the caller must copy out what it needs before advancing.
    The DOCTYPE check happens before the first element is yielded: a hostile file yields nothing.
    `max_element_bytes`: at most that many bytes are read between two yielded elements
    (XMLElementTooLargeError), so one endless record cannot fill memory.
    """
    given_stream = hasattr(path, "read")
    if given_stream:
        size = os.fstat(path.fileno()).st_size
        name = name or "XML file"
    else:
        path = Path(path)
        size = path.stat().st_size
        name = name or path.name
    if size > max_bytes:
        raise XMLTooLargeError(f"{name}: {size} bytes exceeds the limit of {max_bytes} bytes")
    opened = contextlib.nullcontext(path) if given_stream else open(path, "rb")
    if tag and not tag.startswith("{"):
        tag = "{*}" + tag  # match the local name whatever namespace the exporter used
    checked = False
    with opened as stream:
        budget = _ElementBudget(stream, max_element_bytes, name) if max_element_bytes else None
        context = etree.iterparse(budget or stream, events=("end",), tag=tag, **_HARDENED)
        context.resolvers.add(_NoExternalResolver())
        try:
            for _event, element in context:
                if not checked:
                    _reject_declarations(element.getroottree().docinfo, name)
                    checked = True
                yield element
                if budget is not None:
                    budget.used = 0  # the parser reads ahead a little: the bound is per record, give or take a chunk
                # Free what we have consumed: the element itself and the siblings before it.
                element.clear(keep_tail=True)
                parent = element.getparent()
                if parent is not None:
                    while element.getprevious() is not None:
                        del parent[0]
        except etree.XMLSyntaxError as exc:
            if not checked:
                stream.seek(0)
                head = stream.read(65536)
                if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
                    raise HostileXMLError(
                        f"{name}: XML declares a DOCTYPE/ENTITY; DTDs and entity declarations are forbidden"
                    ) from None
            raise _malformed(name, exc) from None
        if not checked and context.root is not None:
            _reject_declarations(context.root.getroottree().docinfo, name)
