"""The declared settings of the file-drop adapter (`adapter: files`): the `source:` section without `adapter`.

`FileDropAdapter.settings_model` is this model; the adapter validates with it in `__init__` (a misspelled key, a
wrong type or a missing `directory` is a SourceError naming the setting), and tools that check mapping files or
print adapter schemas read it (issue 12). Every bound on what a department's file can make tongban hold is a
setting here, with its default; README "Reliability and limits" lists them.
"""
from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adapters.base import SourceError
from adapters.formats.text import SUPPORTED as SUPPORTED_ENCODINGS

FORMATS = ("csv", "xml", "jsonl", "xlsx")
MiB = 1024 * 1024


class CsvSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delimiter: str | None = Field(None, min_length=1, max_length=1, description="field separator (default `,`)")
    quotechar: str | None = Field(None, min_length=1, max_length=1, description='quote character (default `"`)')
    escapechar: str | None = Field(None, min_length=1, max_length=1, description="escape character (default none)")
    doublequote: bool | None = Field(None, description='`""` inside a quoted field is one quote (default true)')
    skipinitialspace: bool | None = Field(None, description="ignore spaces after the delimiter (default false)")
    strict: bool | None = Field(None, description="a malformed quote makes the row damaged (default false)")
    fieldnames: list[str] | None = Field(None, description="column names, for exports without a header row")
    header: bool = Field(False, description="with `fieldnames`: the file has a header row of its own, skipped")


class SftpRetry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(3, ge=1, description="tries of one SFTP operation before the run fails (transient)")
    initial_wait: float = Field(0.5, ge=0, description="seconds before the first retry (exponential, jittered)")
    max_wait: float = Field(10, ge=0, description="longest wait between retries, seconds")


class FileDropSettings(BaseModel):
    """`source:` of a file-drop system. Local folder or `sftp://user@host:port/path`."""

    model_config = ConfigDict(extra="forbid")

    directory: str = Field(description="the drop folder (processing/, done/, failed/ are made in it), or "
                                       "sftp://user@host:port/path")
    pattern: str = Field("*", description="glob of the export files directly in the drop folder (no '/')")
    format: str | None = Field(None, description="csv, xml, jsonl or xlsx; default: from the file suffix")
    encoding: str = Field("utf-8", description="utf-8, utf-8-sig, gbk, gb18030, or auto (BOM/UTF-8, else GB18030)")
    csv: CsvSettings | None = Field(None, description="CSV dialect and header")
    record_tag: str | None = Field(None, description="XML: the element that holds one record (e.g. Case)")
    xml_record_tag: str | None = Field(None, description="XML: older name of `record_tag` (either may be used)")
    sheet: str | None = Field(None, description="XLSX: the sheet to read (default: the first)")
    stable_seconds: float = Field(30, ge=0, description="leave files modified more recently alone (still written)")
    ready_marker: str | None = Field(None, description="only take `x.csv` once `x.csv.ok` (or `x.ok`) exists, "
                                                       "e.g. `.ok`")
    reclaim_after_seconds: float = Field(3600, ge=0, description="files a crashed run left in processing/ go back "
                                                                 "to the drop folder after this long")
    # --- limits: what one department file can make tongban hold -----------------------------------------
    max_field_bytes: int = Field(64 * 1024, gt=0, description="a longer field makes its record damaged")
    max_row_bytes: int = Field(1 * MiB, gt=0, description="one CSV row (its physical lines together) or one JSONL "
                                                          "line; a longer one is a damaged record, skipped unread")
    max_columns: int = Field(1000, gt=0, description="fields in a CSV row, columns of a sheet; more is damaged")
    max_json_depth: int = Field(64, gt=0, description="JSONL: nesting of arrays/objects; deeper is damaged")
    max_xml_bytes: int = Field(4 * 1024 ** 3, gt=0, description="XML: a larger file is refused (failed/)")
    max_xml_record_bytes: int = Field(16 * MiB, gt=0, description="XML: one record element; a larger one ends the "
                                                                  "file's reading with a damaged record")
    max_xlsx_bytes: int = Field(256 * MiB, gt=0, description="XLSX: declared decompressed size of all parts (zip "
                                                             "directory, checked before opening); more is refused")
    max_xlsx_rows: int = Field(1_000_000, gt=0, description="XLSX: rows of the sheet; the rest is reported unread")
    # --- SFTP inboxes (adapters/sftp.py) ---------------------------------------------------------------
    password_env: str | None = Field(None, description="SFTP: environment variable holding the password")
    private_key_env: str | None = Field(None, description="SFTP: environment variable holding a private key "
                                                          "(a file path or the key text)")
    private_key_passphrase_env: str | None = Field(None, description="SFTP: variable holding the key's passphrase")
    known_hosts: str | None = Field(None, description="SFTP: known_hosts file (default ~/.ssh/known_hosts); "
                                                      "`none` needs insecure_skip_host_check")
    insecure_skip_host_check: bool = Field(False, description="SFTP: with known_hosts: none (sandbox servers only)")
    timeout: float = Field(30, gt=0, description="SFTP: seconds for connecting and for each metadata operation")
    retry: SftpRetry | None = Field(None, description="SFTP: retries of transient failures")
    download_dir: str | None = Field(None, description="SFTP: where files are downloaded while read "
                                                       "(default $TONGBAN_HOME/tmp/sftp)")

    @field_validator("directory", mode="before")
    @classmethod
    def _path_like(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("directory")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name the drop folder")
        return value

    @field_validator("pattern", "ready_marker")
    @classmethod
    def _inside_the_folder(cls, value: str | None) -> str | None:
        # Confinement: a glob or marker can only name files directly in the drop folder.
        if value is not None and ("/" in value or "\\" in value or value.startswith("..") or not value.strip()):
            raise ValueError(f"{value!r} must name files directly in the drop folder (no '/', no '..')")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        if value.lower().replace("_", "-") not in SUPPORTED_ENCODINGS:
            raise ValueError(f"encoding {value!r} is not supported (use one of {', '.join(SUPPORTED_ENCODINGS)})")
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None and value not in FORMATS:
            raise ValueError(f"format {value!r} is not supported (use one of {', '.join(FORMATS)})")
        return value

    @model_validator(mode="after")
    def _one_record_tag(self) -> "FileDropSettings":
        if self.record_tag and self.xml_record_tag and self.record_tag != self.xml_record_tag:
            raise ValueError(f"record_tag {self.record_tag!r} and xml_record_tag {self.xml_record_tag!r} disagree; "
                             f"set one of them")
        return self

    @property
    def tag(self) -> str | None:
        return self.record_tag or self.xml_record_tag


def validate(system: str, settings: dict[str, Any]) -> FileDropSettings:
    """The validated settings, or a SourceError naming every setting that is wrong."""
    given = {key: value for key, value in settings.items() if key != "adapter"}
    try:
        return FileDropSettings.model_validate(given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "source"
            if error["type"] == "missing":
                problems.append(f"source setting {where!r} is required")
            elif error["type"] == "extra_forbidden":
                model = CsvSettings if where.startswith("csv.") else FileDropSettings
                known = ", ".join(model.model_fields)
                problems.append(f"source setting {where!r} is not a setting of the files adapter (known: {known})")
            else:
                problems.append(f"source setting {where!r}: {error['msg'].removeprefix('Value error, ')}")
        raise SourceError(system, "; ".join(problems)) from None
