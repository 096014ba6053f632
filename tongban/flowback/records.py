"""National flowback records (数据回流) and batch manifests: the field names of the national upload tables,
record normalisation, and the digest a manifest carries.

A ministry batch is a sequence of records and a manifest (batch id, record count, digest). The digest is
SHA-256 over the records in batch order *as the ministry sent them* (its own field names, before any mapping),
each written as canonical JSON of its non-empty fields (`canonical_record`: text trimmed, empty values left out,
keys sorted, no whitespace, UTF-8) followed by a newline. It is the same whether the batch came as XML, CSV
(in any encoding) or SOAP pages, so one rule proves completeness for every transport.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from tongban.bus.envelope import canonical_json, canonical_text

# Field names of the national 办件 upload tables (the row carries batch, operation and row guid).
ROWGUID = "ROWGUID"          # row guid: the source record key
PROJID = "PROJID"            # 办件编号
TASKCODE = "TASKCODE"        # 实施编码
TASKNAME = "TASKNAME"        # 事项名称
AREACODE = "AREACODE"        # 行政区划 (6, 9 or 12 digits): the only field routing looks at
APPLYERNAME = "APPLYERNAME"
APPLYERCARDTYPE = "APPLYERCARDTYPE"
APPLYERCARDCODE = "APPLYERCARDCODE"  # 证件号码: personal data, never used for routing, never logged in clear
APPLYDATE = "APPLYDATE"
PROJSTATUS = "PROJSTATUS"
OPERATETYPE = "OPERATETYPE"  # I insert · U update · D delete
OPERATEDATE = "OPERATEDATE"
DATASOURCE = "DATASOURCE"

NATIONAL_FIELDS = [ROWGUID, PROJID, TASKCODE, TASKNAME, AREACODE, APPLYERNAME, APPLYERCARDTYPE, APPLYERCARDCODE,
                   APPLYDATE, PROJSTATUS, OPERATETYPE, OPERATEDATE, DATASOURCE]

Record = dict[str, str]


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or lacks a required field."""


@dataclass(frozen=True)
class Manifest:
    batch_id: str
    record_count: int
    digest: str
    data_file: str | None = None   # file drops: the data file the manifest describes
    format: str | None = None      # file drops: xml | csv

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> "Manifest":
        try:
            batch_id = str(data["batch_id"]).strip()
            count = int(data["record_count"])
            digest = str(data["digest"]).strip().lower()
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: manifest needs batch_id, record_count (integer) and digest: {exc!r}") from None
        if not batch_id:
            raise ManifestError(f"{where}: manifest batch_id is empty")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ManifestError(f"{where}: manifest digest must be 64 hex characters (SHA-256)")
        return cls(batch_id, count, digest, data.get("data_file"), data.get("format"))

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path.name}: manifest is not readable JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ManifestError(f"{path.name}: manifest must be a JSON object")
        return cls.from_mapping(data, path.name)

    def to_json(self) -> str:
        data = {"batch_id": self.batch_id, "record_count": self.record_count, "digest": self.digest}
        if self.data_file:
            data.update(data_file=self.data_file, format=self.format)
        return json.dumps(data, ensure_ascii=False, indent=2)


def normalise_record(raw: Mapping[str, Any]) -> Record:
    """Text values with surrounding whitespace removed; empty fields dropped (XML omits what CSV leaves empty)."""
    record: Record = {}
    for name, value in raw.items():
        if value is None or isinstance(value, (dict, list)):
            continue
        text = str(value).strip()
        if text:
            record[str(name)] = text
    return record


def canonical_record(raw: Any) -> Any:
    """A record as the digest sees it: strings trimmed, empty values (None, "", [], {}) left out, nested XML
    elements kept as nested objects. For a flat record this is `normalise_record`."""
    if isinstance(raw, dict) and all(type(v) is str for v in raw.values()):  # the common case: a flat text record
        return {str(k): t for k, v in raw.items() if (t := v.strip())}
    if isinstance(raw, Mapping):
        out = {}
        for name, value in raw.items():
            value = canonical_record(value)
            if value not in (None, "", [], {}):
                out[str(name)] = value
        return out
    if isinstance(raw, (list, tuple)):
        return [v for v in (canonical_record(item) for item in raw) if v not in (None, "", [], {})]
    if raw is None:
        return None
    return str(raw).strip()


def record_bytes(raw: Any) -> bytes:
    """The bytes a record contributes to the digest (without the newline)."""
    if type(raw) is dict and set(map(type, raw.values())) == _STR and set(map(type, raw)) == _STR:
        # A flat text record (the common case): canonical JSON of its trimmed non-empty fields, no type checks left.
        return canonical_text({k: t for k, v in raw.items() if (t := v.strip())})
    return canonical_json(canonical_record(raw))


_STR = {str}


def trimmed_body(raw: Any) -> tuple[dict[str, str] | None, bytes]:
    """`record_bytes(raw)`, with the trimmed record it encoded when `raw` is a flat text record (else None): the
    router maps that record without trimming it again, and when it maps to itself its idempotency key's digest is
    the one already taken of these bytes."""
    if type(raw) is dict and set(map(type, raw.values())) == _STR and set(map(type, raw)) == _STR:
        flat = {k: t for k, v in raw.items() if (t := v.strip())}
        return flat, canonical_text(flat)
    return None, canonical_json(canonical_record(raw))


class RecordsDigest:
    """The manifest digest, computed incrementally as records stream past."""

    def __init__(self):
        self._hash = hashlib.sha256()
        self.count = 0

    def add(self, record: Mapping[str, Any]) -> None:
        self.add_canonical(record_bytes(record))

    def add_canonical(self, body: bytes) -> None:
        """Add a record already written as canonical JSON (callers that need the bytes anyway)."""
        self._hash.update(body)
        self._hash.update(b"\n")
        self.count += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def records_digest(records: Iterable[Record]) -> str:
    digest = RecordsDigest()
    for record in records:
        digest.add(record)
    return digest.hexdigest()
