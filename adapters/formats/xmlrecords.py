"""XML reader: hardened lxml iterparse (adapters.safexml) over the configured record element.

Bounds: the file is at most `max_xml_bytes`, one record at most `max_xml_record_bytes` (the parser is never
allowed to read more than that while one record is being built); no DTD or entity is ever read (a declaration
refuses the file);
libxml2 without huge_tree caps nesting at 256 levels and one text node at 10 MB, so `element_to_dict`'s recursion
stays shallow and a deep or huge document is a clear "not well-formed" error naming the line.
"""
from __future__ import annotations

from typing import Any, BinaryIO, Iterator

from adapters import safexml
from adapters.formats import FileUnreadable, ReadOptions, Row, field_too_long


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


TEXT_KEY = "#text"  # the text of an element that also has attributes or children (xmltodict's name for it)


def element_to_dict(element) -> dict[str, Any]:
    """Attributes and child elements by local name; leaf text as strings, nested elements as dicts,
    repeated children as lists; the text of an element with attributes or children under "#text"
    (`<Amount currency="CNY">12</Amount>` → {"currency": "CNY", "#text": "12"}: nothing is dropped)."""
    record: dict[str, Any] = {_local(k): v for k, v in element.attrib.items()} if element.attrib else {}
    text = (element.text or "").strip()
    if text:
        record[TEXT_KEY] = text
    for child in element:
        if not isinstance(child.tag, str):
            continue  # comments and processing instructions
        name = _local(child.tag)
        value = element_to_dict(child) if len(child) or child.attrib else (child.text or "")
        if name in record:
            existing = record[name]
            if isinstance(existing, list):
                existing.append(value)
            else:
                record[name] = [existing, value]
        else:
            record[name] = value
    return record


def read_xml(stream: BinaryIO, options: ReadOptions) -> Iterator[Row]:
    if not options.xml_record_tag:
        raise FileUnreadable("source setting record_tag (or xml_record_tag) is required for XML files")
    max_bytes = options.max_field_bytes
    count = 0
    elements = safexml.iterparse_file(stream, options.xml_record_tag, max_bytes=options.max_xml_bytes,
                                      name=options.name, max_element_bytes=options.max_xml_record_bytes)
    try:
        for element in elements:
            count += 1
            record = element_to_dict(element)
            too_long = field_too_long(record.items(), max_bytes, "utf-8")
            if too_long:
                yield f"record {count}", {}, too_long
                continue
            yield f"record {count}", record, None
    except (safexml.HostileXMLError, safexml.XMLTooLargeError) as exc:
        raise FileUnreadable(str(exc)) from None
    except safexml.XMLElementTooLargeError as exc:
        if count == 0:
            raise FileUnreadable(str(exc)) from None
        yield f"record {count + 1}", {}, f"after record {count}: {exc}"
    except safexml.MalformedXMLError as exc:
        if count == 0:
            raise FileUnreadable(str(exc)) from None
        # Records before the damage were good and have been handed on; the rest is reported, not lost silently.
        yield f"record {count + 1}", {}, f"XML broken after record {count}: {exc}"
