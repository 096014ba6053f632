"""Reading national batches: file drops (XML or CSV data file + JSON manifest) and the SOAP batch service.

Both give `Batch` objects: a manifest, a record stream that can be read in constant memory, and `done()` to
call once every record is published (file: move to done/; SOAP: acknowledge the batch to the ministry).
XML goes through adapters.safexml (no DTD, no entities, no network).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import httpx
from lxml import etree

from adapters import safexml

from .config import FileTransport, SoapTransport
from .records import Manifest, ManifestError, Record, normalise_record

RECORD_TAG = "Record"
MANIFEST_SUFFIX = ".manifest.json"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
FB_NS = "urn:sandbox:ministry:flowback:v1"  # the sandbox ministry's service namespace


class BatchUnreadable(ValueError):
    """A batch (or its manifest) that cannot be read; it stays where it is and the run reports it."""


@dataclass
class Batch:
    manifest: Manifest
    origin: str
    read: Callable[[], Iterator[Record]]
    done: Callable[[], None]
    duplicate_done: Callable[[], None] | None = None  # where a recognised re-delivery goes (default: done)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


# --- files ------------------------------------------------------------------------------------------
def read_xml_records(path: Path, max_bytes: int) -> Iterator[Record]:
    """Each <Record> element's children as a flat record, streamed (safexml clears what was read)."""
    try:
        for element in safexml.iterparse_file(path, RECORD_TAG, max_bytes=max_bytes):
            yield normalise_record({_local(child.tag): child.text for child in element if isinstance(child.tag, str)})
    except safexml.XMLRejected as exc:
        raise BatchUnreadable(str(exc)) from None


def read_csv_records(path: Path, encoding: str) -> Iterator[Record]:
    try:
        with path.open(encoding=encoding, newline="") as handle:
            reader = csv.DictReader(handle)
            for line_no, row in enumerate(reader, start=2):
                if None in row:  # more cells than header columns: do not guess which is which
                    raise BatchUnreadable(f"{path.name} line {line_no}: more cells than header columns")
                yield normalise_record(row)
    except UnicodeDecodeError as exc:
        raise BatchUnreadable(f"{path.name}: not {encoding} text ({exc.reason} at byte {exc.start})") from None


def _move(path: Path, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.replace(path, directory / path.name)


def file_batches(transport: FileTransport) -> Iterator[Batch | BatchUnreadable]:
    """Every manifest in <drop_dir>/incoming with its data file, oldest name first."""
    drop = Path(transport.drop_dir)
    incoming = drop / "incoming"
    if not incoming.is_dir():
        return
    for manifest_path in sorted(incoming.glob(f"*{MANIFEST_SUFFIX}")):
        try:
            manifest = Manifest.read(manifest_path)
        except ManifestError as exc:
            yield BatchUnreadable(str(exc))
            continue
        stem = manifest_path.name[: -len(MANIFEST_SUFFIX)]
        data = incoming / (manifest.data_file or "")
        if not manifest.data_file or not data.is_file():
            candidates = [incoming / f"{stem}.{ext}" for ext in ("xml", "csv")]
            found = [c for c in candidates if c.is_file()]
            if not found:
                yield BatchUnreadable(f"{manifest_path.name}: its data file ({manifest.data_file or stem + '.xml/.csv'}) is missing")
                continue
            data = found[0]
        fmt = (manifest.format or data.suffix.lstrip(".")).lower()
        if fmt == "xml":
            read = (lambda d=data: read_xml_records(d, transport.max_file_bytes))
        elif fmt == "csv":
            read = (lambda d=data: read_csv_records(d, transport.encoding))
        else:
            yield BatchUnreadable(f"{manifest_path.name}: format {fmt!r} is neither xml nor csv")
            continue

        def finish(folder: str, d=data, m=manifest_path) -> None:
            _move(d, drop / folder)
            _move(m, drop / folder)

        yield Batch(manifest, data.name, read, lambda f=finish: f("done"), lambda f=finish: f("duplicates"))


# --- SOAP -------------------------------------------------------------------------------------------
class SoapBatchClient:
    """Client of the ministry's SOAP batch service: ListBatches, FetchBatch (paged), AckBatch."""

    def __init__(self, transport: SoapTransport):
        self.transport = transport
        auth = None
        if transport.username:
            auth = (transport.username, os.environ.get(transport.password_env or "", ""))
        self.http = httpx.Client(timeout=transport.timeout, auth=auth)

    def _call(self, operation: str, **params) -> etree._Element:
        env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV, "fb": FB_NS})
        op = etree.SubElement(etree.SubElement(env, f"{{{SOAP_ENV}}}Body"), f"{{{FB_NS}}}{operation}")
        for name, value in params.items():
            etree.SubElement(op, f"{{{FB_NS}}}{name}").text = str(value)
        body = etree.tostring(env, xml_declaration=True, encoding="utf-8")
        try:
            response = self.http.post(self.transport.url, content=body,
                                      headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": operation})
        except httpx.HTTPError as exc:
            raise BatchUnreadable(f"ministry SOAP {operation}: {exc!r}") from None
        try:
            root = safexml.parse_bytes(response.content, source=f"ministry SOAP {operation} response")
        except safexml.XMLRejected as exc:
            raise BatchUnreadable(str(exc)) from None
        fault = root.find(f".//{{{SOAP_ENV}}}Fault")
        if fault is not None or response.status_code >= 400:
            text = fault.findtext("faultstring") if fault is not None else response.text[:200]
            raise BatchUnreadable(f"ministry SOAP {operation} failed ({response.status_code}): {text}")
        return root

    @staticmethod
    def _manifest(element: etree._Element, where: str) -> Manifest:
        return Manifest.from_mapping({
            "batch_id": element.findtext(f"{{{FB_NS}}}BatchId"),
            "record_count": element.findtext(f"{{{FB_NS}}}RecordCount"),
            "digest": element.findtext(f"{{{FB_NS}}}Digest")}, where)

    def list_batches(self) -> list[Manifest]:
        root = self._call("ListBatches")
        return [self._manifest(b, "ListBatches") for b in root.iter(f"{{{FB_NS}}}Batch")]

    def pages(self, batch_id: str) -> Iterator[Record]:
        page = 1
        while True:
            root = self._call("FetchBatch", BatchId=batch_id, PageNo=page, PageSize=self.transport.page_size)
            records = list(root.iter(f"{{{FB_NS}}}Record"))
            for element in records:
                yield normalise_record({_local(c.tag): c.text for c in element if isinstance(c.tag, str)})
            if len(records) < self.transport.page_size:
                return
            page += 1

    def ack(self, batch_id: str) -> None:
        self._call("AckBatch", BatchId=batch_id)

    def close(self) -> None:
        self.http.close()


def soap_batches(client: SoapBatchClient) -> Iterator[Batch | BatchUnreadable]:
    try:
        manifests = client.list_batches()
    except (BatchUnreadable, ManifestError) as exc:
        yield BatchUnreadable(str(exc))
        return
    for manifest in manifests:
        yield Batch(manifest, client.transport.url, lambda b=manifest.batch_id: client.pages(b),
                    lambda b=manifest.batch_id: client.ack(b))
