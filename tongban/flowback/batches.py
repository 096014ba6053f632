"""What a national batch is, on top of the adapters: a manifest, the batch's records (read by a registered adapter,
exactly as a department system's are), and what to tell the source once the batch is done or must stay.

- File drops (`adapter: files`, local or SFTP): every `<stem>.manifest.json` in the drop folder is a batch; its
  data file is the manifest's `data_file`, else `<stem>.xml|.csv|.jsonl|.xlsx`. The files adapter reads it (encoding,
  `xml_record_tag`, `csv:` …) and moves it to done/ (`done()`) or back to the inbox (`keep()`); the manifest follows.
- Services (`adapter: soap` or `rest`): `flowback.batches` says how batches are listed and acknowledged:

      batches:
        list: {operation: ListBatches, records_path: Batch, paging: null}   # adapter settings for the listing call
        manifest: {batch_id: BatchId, record_count: RecordCount, digest: Digest}   # JMESPath into each listed item
        batch_param: BatchId        # the fetch call's parameter naming the batch
        ack: {operation: AckBatch, records_path: "", paging: null}          # optional: called once a batch is done

  Without `ack:` (a read-only REST API) the service keeps listing a batch; one that is done is passed over quietly.

What this module refuses to know: record formats and protocols (the adapters'), field names (the mapping's),
routing (the router's).
"""
from __future__ import annotations

import glob
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import jmespath

from adapters.base import Adapter, RawRecord, SourceError, TransientSourceError, adapter_class
from adapters.inbox import DONE, FAILED, INBOX, open_inbox

from .mapping import FlowbackMapping
from .records import Manifest, ManifestError

MANIFEST_SUFFIX = ".manifest.json"
DATA_SUFFIXES = (".xml", ".csv", ".txt", ".jsonl", ".xlsx")


class BatchUnreadable(ValueError):
    """A batch (or its manifest) that cannot be read; it stays where it is and the run reports it."""


@dataclass
class Batch:
    manifest: Manifest
    origin: str
    read: Callable[[], Iterator[RawRecord]]
    done: Callable[[], None]                  # every record accounted for: the source may forget the batch
    keep: Callable[[str], None]               # not done: leave it for the next run (or `flowback retry`)
    duplicate_done: Callable[[], None] | None = None   # a batch already done, received again
    problems: list[str] = field(default_factory=list)  # what the adapter could not read (a file moved to failed/)
    # False for a service without `ack:`: it lists a batch until it ages out, so seeing a done batch listed again
    # is not a re-delivery worth a ledger event.
    acknowledged: bool = True


def _adapter(mapping: FlowbackMapping, settings: dict[str, Any]) -> Adapter:
    return adapter_class(settings["adapter"])(mapping.system, settings)


# --- file drops -----------------------------------------------------------------------------------
def _file_batches(mapping: FlowbackMapping) -> Iterator[Batch | BatchUnreadable]:
    # The manifest is written last (the ministry's ready marker): a data file with its manifest is complete.
    settings = {"stable_seconds": 0, **mapping.source}
    if not (settings.get("record_tag") or settings.get("xml_record_tag")):
        settings["xml_record_tag"] = "Record"  # <Record>: the national layout
    settings.pop("ready_marker", None)
    inbox = open_inbox(mapping.system, settings)
    try:
        if not inbox.exists():
            yield BatchUnreadable(f"drop folder {inbox.describe()} does not exist")
            return
        inbox.prepare()
        for entry in sorted(inbox.scan("*" + MANIFEST_SUFFIX), key=lambda e: e.name):
            try:
                with inbox.local_copy(INBOX, entry.name) as path:
                    manifest = Manifest.read(path)
            except ManifestError as exc:
                yield BatchUnreadable(str(exc))
                continue
            stem = entry.name[: -len(MANIFEST_SUFFIX)]
            candidates = [manifest.data_file] if manifest.data_file else [stem + s for s in DATA_SUFFIXES]
            data = next((c for c in candidates if inbox.has(INBOX, c)), None)
            if data is None:
                yield BatchUnreadable(f"{entry.name}: its data file ({' or '.join(candidates)}) is not in "
                                      f"{inbox.describe()}")
                continue
            yield _file_batch(mapping, settings, inbox, manifest, entry.name, data)
    finally:
        inbox.close()


def _file_batch(mapping, settings, inbox, manifest: Manifest, manifest_name: str, data: str) -> Batch:
    one = {**settings, "pattern": glob.escape(data)}
    if manifest.format and "format" not in mapping.source:
        one["format"] = manifest.format
    adapter = _adapter(mapping, one)
    batch: Batch

    def read() -> Iterator[RawRecord]:
        yield from adapter.fetch(None)
        for name, reason in adapter.failed_files:  # the adapter moved the data file to failed/ with its reason
            batch.problems.append(f"{name}: {reason}")
            if inbox.has(INBOX, manifest_name):
                inbox.rename(INBOX, manifest_name, FAILED, inbox.free_name(FAILED, manifest_name))

    def move_manifest(folder: str) -> None:
        if inbox.has(INBOX, manifest_name):
            inbox.rename(INBOX, manifest_name, folder, inbox.free_name(folder, manifest_name))

    def done() -> None:
        adapter.commit()
        move_manifest(DONE)
        adapter.close()

    def keep(reason: str) -> None:
        adapter.abort(reason)
        adapter.close()

    def duplicate_done() -> None:
        # Not read at all: the data file goes to done/ beside the manifest, the ledger says it was a re-delivery.
        inbox.rename(INBOX, data, DONE, inbox.free_name(DONE, data))
        move_manifest(DONE)
        adapter.close()

    batch = Batch(manifest, data, read, done, keep, duplicate_done)
    return batch


def restore_failed(mapping: FlowbackMapping, data_file: str) -> list[str]:
    """Put a batch the files adapter moved to failed/ (unreadable with the source file as it was) back into the
    drop folder, so that `tongban flowback retry` reads it again; returns the names moved back."""
    if mapping.source["adapter"] != "files":
        return []
    inbox = open_inbox(mapping.system, mapping.source)
    moved = []
    try:
        stem = data_file.rsplit(".", 1)[0]
        for name in (data_file, stem + MANIFEST_SUFFIX):
            if inbox.has(FAILED, name) and not inbox.has(INBOX, name):
                inbox.rename(FAILED, name, INBOX, name)
                moved.append(name)
                if inbox.has(FAILED, name + ".reason.txt"):
                    inbox.rename(FAILED, name + ".reason.txt", FAILED, inbox.free_name(FAILED, name + ".reason.old.txt"))
    finally:
        inbox.close()
    return moved


# --- services (SOAP, REST) ------------------------------------------------------------------------
def _service_batches(mapping: FlowbackMapping) -> Iterator[Batch | BatchUnreadable]:
    spec = mapping.batches
    if not spec.get("list") or not spec.get("batch_param"):
        yield BatchUnreadable(f"{mapping.path_text}: a {mapping.source['adapter']} flowback source needs "
                              "flowback.batches with `list:` and `batch_param:` (see docs/flowback.md)")
        return
    paths = {k: jmespath.compile(str(v)) for k, v in {"batch_id": "batch_id", "record_count": "record_count",
                                                     "digest": "digest", **(spec.get("manifest") or {})}.items()}
    lister = _adapter(mapping, {**mapping.source, **spec["list"]})
    try:
        listed = [raw.data for raw in lister.fetch(None)]
    except TransientSourceError:
        raise  # the service is away: the run fails and is retried (Airflow), nothing was read
    except SourceError as exc:
        yield BatchUnreadable(f"listing batches: {exc}")
        return
    finally:
        lister.close()
    for item in listed:
        try:
            manifest = Manifest.from_mapping({k: p.search(item) for k, p in paths.items()}, "batch list")
        except ManifestError as exc:
            yield BatchUnreadable(str(exc))
            continue
        yield _service_batch(mapping, spec, manifest)


def _service_batch(mapping: FlowbackMapping, spec: dict, manifest: Manifest) -> Batch:
    param = {spec["batch_param"]: manifest.batch_id}
    settings = {**mapping.source, "params": {**(mapping.source.get("params") or {}), **param}}
    origin = str(mapping.source.get("wsdl") or mapping.source.get("base_url") or mapping.source["adapter"])

    def read() -> Iterator[RawRecord]:
        adapter = _adapter(mapping, settings)
        try:
            yield from adapter.fetch(None)
        finally:
            adapter.close()

    def ack() -> None:
        if not spec.get("ack"):
            return
        acker = _adapter(mapping, {**mapping.source, **spec["ack"], "params": param})
        try:
            for _ in acker.fetch(None):
                pass
        finally:
            acker.close()

    return Batch(manifest, origin, read, ack, lambda reason: None, ack, acknowledged=bool(spec.get("ack")))


def source_batches(mapping: FlowbackMapping) -> Iterator[Batch | BatchUnreadable]:
    """The source's batches waiting to be read, oldest name first (file drops) or in the service's order."""
    if mapping.source["adapter"] == "files":
        return _file_batches(mapping)
    return _service_batches(mapping)
