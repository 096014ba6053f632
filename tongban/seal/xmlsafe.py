"""Parse XML that arrived from outside without letting it reach anything else (DESIGN.md promise 7).

No DTD is loaded, no entity is expanded, no network is touched and the size is bounded. A document that
declares a DOCTYPE at all is refused: a sealed licence or receipt never needs one, and refusing it outright
is simpler to reason about than deciding which DTD features are harmless.
"""
from __future__ import annotations

import threading

from lxml import etree

# A licence or receipt is a few kilobytes; 5 MiB leaves room for face data without letting a sender
# exhaust memory.
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024

_local = threading.local()  # lxml parsers must not be shared between threads


class UnsafeXMLError(ValueError):
    """The bytes are not a well-formed, DTD-free XML document within the size bound."""


def safe_parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=False,
        )
        _local.parser = parser
    return parser


def parse_untrusted(data: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> etree._Element:
    """Parse `data` and return its root element, or raise UnsafeXMLError naming the rule broken."""
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafeXMLError(f"expected XML bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise UnsafeXMLError(f"document is {len(data)} bytes, over the {max_bytes}-byte limit")
    # A cheap byte scan refuses the common attacks (billion laughs, external entities) before libxml2 sees
    # them; the docinfo check below catches declarations in other encodings (UTF-16 …).
    head = bytes(data)
    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
        raise UnsafeXMLError("DOCTYPE and entity declarations are not allowed")
    try:
        root = etree.fromstring(head, parser=safe_parser())
    except etree.XMLSyntaxError as exc:
        raise UnsafeXMLError(f"not well-formed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnsafeXMLError("DOCTYPE and entity declarations are not allowed")
    for _ in root.iter(etree.Entity):
        raise UnsafeXMLError("entity references are not allowed")
    return root
