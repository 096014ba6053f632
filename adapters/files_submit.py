"""File-drop submitter: a bundle member's application written, atomically, into a legacy system's inbox folder.

    submit:
      adapter: files
      directory: ${CQ_WSJKW_BIRTH_INBOX:-.tongban/bundle-drop/wsjkw/inbox}
      format: json              # json (one object) or xml (<record_tag> with one element per field)
      record_tag: Application   # xml only
      encoding: utf-8           # utf-8 or gb18030 (what the legacy reader expects)
      reference_field: wbbh     # field that carries tongban's reference; the file is named <reference>.<format>
      item_field: sxbm

The file is written to a hidden temporary name in the same folder, flushed to disk and renamed into place
(os.replace), so the legacy reader never sees half a file. A legacy system that reads file drops has no answer to
give: its case key is the reference itself (the department keys the case by the file's 外部编号).

Idempotency: a resubmission finds `<reference>.<format>` (or the same name in the reader's `done/` beside `inbox/`)
and writes nothing; a different content under the same reference is refused (a `SourceError`), never overwritten.
A full disk or a folder that cannot be written is transient (`TransientSourceError`, the bus retries later).
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

from pydantic import BaseModel, ConfigDict, Field

from adapters.base import SourceError, TransientSourceError
from adapters.settings import Configured
from adapters.submit import SubmitReceipt, Submission, Submitter

_TRANSIENT_ERRNO = {errno.ENOSPC, errno.EAGAIN, errno.EBUSY, errno.EIO, errno.EDQUOT}


class FileSubmitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"directory": ".tongban/bundle-drop/wsjkw/inbox", "format": "json", "reference_field": "wbbh"}]})
    directory: str = Field(description="The legacy system's inbox folder (made when missing).")
    format: Literal["json", "xml"] = Field("json", description="json: one object per file; xml: one element per field.")
    record_tag: str = Field("Application", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="XML: the root element.")
    encoding: Literal["utf-8", "gb18030"] = Field("utf-8", description="Encoding the legacy reader expects.")
    reference_field: str = Field("reference", min_length=1, description="Field carrying tongban's reference.")
    item_field: str = Field("item_code", min_length=1, description="Field carrying the 实施编码.")


class FileSubmitter(Configured, Submitter):
    kind = "files"
    settings_model = FileSubmitSettings

    def __init__(self, system: str, settings: dict[str, Any], **seams: Any):
        super().__init__(system, settings, **seams)  # Configured: self.config, a FileSubmitSettings
        self.folder = Path(self.config.directory)

    def render(self, submission: Submission) -> bytes:
        record = {**submission.fields, self.config.reference_field: submission.reference,
                  self.config.item_field: submission.item_code}
        if self.config.format == "json":
            text = json.dumps(record, ensure_ascii=False, sort_keys=True, indent=1)
        else:
            root = ElementTree.Element(self.config.record_tag)
            for name, value in record.items():
                if not isinstance(name, str) or not name.isidentifier():
                    raise SourceError(self.system, f"field {name!r} cannot be an XML element name")
                child = ElementTree.SubElement(root, name)
                child.text = "" if value is None else (json.dumps(value, ensure_ascii=False)
                                                        if isinstance(value, (dict, list)) else str(value))
            text = ElementTree.tostring(root, encoding="unicode")
            text = f'<?xml version="1.0" encoding="{self.config.encoding.upper()}"?>\n{text}'
        return text.encode(self.config.encoding)

    def _existing(self, name: str) -> Path | None:
        for folder in (self.folder, self.folder.parent / "done", self.folder.parent / "processing"):
            if (folder / name).is_file():
                return folder / name
        return None

    def submit(self, submission: Submission) -> SubmitReceipt:
        name = f"{submission.reference}.{self.config.format}"
        content = self.render(submission)
        existing = self._existing(name)
        if existing is not None:
            if existing.read_bytes() != content:
                raise SourceError(self.system, f"{existing} already holds another application under reference "
                                               f"{submission.reference}: not overwritten")
            return SubmitReceipt(submission.reference, {"file": str(existing), "resubmitted": True})
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{submission.reference}.", suffix=".tmp", dir=self.folder)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(content)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.folder / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            error = TransientSourceError if exc.errno in _TRANSIENT_ERRNO else SourceError
            raise error(self.system, f"cannot write {name} into {self.folder}: {exc.strerror}") from None
        return SubmitReceipt(submission.reference, {"file": str(self.folder / name)})
