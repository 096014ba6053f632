"""A flowback source file: a ministry batch format declared in the mapping language of department systems.

It is a mapping file (tongban.mapping.loader reads it: line numbers, `${NAME}` expansion, no secrets, unknown
top-level keys refused) with a `flowback:` section instead of `case:`:

    system: mps-flowback-files            # the source's name (quarantine, ledger, DAG id flowback__<system>)
    schedule: "*/30 * * * *"
    source: {adapter: files, directory: …, xml_record_tag: Row, encoding: gb18030 …}   # any registered adapter
    record: {key: XH}                     # JMESPath to the ministry's own row key (names quarantined records)
    tables: {areas: tables/mps_areas.csv} # optional lookup tables, as in department mappings
    flowback:
      routing: ../routing.yaml            # functional zones, municipal levels (a path or the section inline)
      sinks: ../district-sinks.yaml       # where each district receives its records (a path or inline)
      batches: {…}                        # SOAP / REST only: how batches are listed and acknowledged
      fields:                             # national flowback field ← the ministry's record
        ROWGUID: {path: XH, required: true}
        AREACODE: {path: XZQHDM}
        APPLYDATE: {path: SQSJ, transform: datetime, format: "%Y-%m-%d %H:%M:%S"}

A field spec is exactly a department mapping's (path, const, default, map, lookup, transform, required, format,
timezone …), compiled by tongban.mapping.engine. What this module refuses to know: how records are read (the
adapter's job), where they go (routing.Router's) and what a batch is (batches.py).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tongban.mapping.engine import FieldRule as Field
from tongban.mapping.errors import MappingError, MappingFileError
from tongban.mapping.loader import LineDict
from tongban.mapping.paths import compile_path
from tongban.mapping.tables import load_tables

from .config import RoutingConfig, SinksConfig, include_section
from .records import AREACODE, NATIONAL_FIELDS, ROWGUID, TASKCODE, Record

FLOWBACK_KEYS = {"routing", "sinks", "fields", "batches"}
REQUIRED_FIELDS = (ROWGUID, TASKCODE, AREACODE)  # the record's key, its 实施编码 and its 行政区划
BATCHES_KEYS = {"list", "batch_param", "ack", "manifest"}


def _line(node: Any, key: str) -> int | None:
    return getattr(node, "key_lines", {}).get(key)


class FlowbackMapping:
    """A loaded flowback source file: `map_record(raw)` turns one ministry record into a national one."""

    kind = "flowback"

    def __init__(self, doc: LineDict, path: Path):
        self.doc, self.path = doc, Path(path)
        self.path_text = str(path)
        self.system = str(doc["system"])
        self.source_name = self.system
        self.department = str(doc.get("department", ""))
        self.name = str(doc.get("description", "") or self.department)
        self.schedule = doc.get("schedule", "@hourly")
        self.source: dict = dict(doc["source"])
        self.source_node: LineDict = doc["source"]  # the lines of every setting, for mapping check's source_check
        if "adapter" not in self.source:
            raise MappingFileError(self.path_text, _line(doc, "source"), "source needs `adapter:` (files, soap, rest …)")
        record = doc["record"]
        if not isinstance(record, dict) or "key" not in record:
            raise MappingFileError(self.path_text, _line(doc, "record"), "record needs `key:` (the ministry's row key path)")
        for key in record:
            if key not in ("key", "timezone"):
                raise MappingFileError(self.path_text, _line(record, key),
                                       f"record: unknown key {key!r} (allowed: key, timezone)")
        self.key_expression = str(record["key"])
        self.key_path = compile_path(self.key_expression)
        self.timezone = record.get("timezone", "Asia/Shanghai")
        # Tables are declared, confined and decoded exactly as in department mappings.
        self.tables, self.table_columns, self.table_specs = load_tables(doc, self.path)
        section = doc["flowback"]
        if not isinstance(section, dict):
            raise MappingFileError(self.path_text, _line(doc, "flowback"), "flowback must be a mapping "
                                                                           "(routing, sinks, fields …)")
        for key in section:
            if key not in FLOWBACK_KEYS:
                raise MappingFileError(self.path_text, _line(section, key),
                                       f"flowback: unknown key {key!r} (allowed: {', '.join(sorted(FLOWBACK_KEYS))})")
        self.routing: RoutingConfig = self._model(section, "routing", RoutingConfig)
        self.sinks: SinksConfig = self._model(section, "sinks", SinksConfig)
        self.batches: dict = dict(section.get("batches") or {})
        for key in self.batches:
            if key not in BATCHES_KEYS:
                raise MappingFileError(self.path_text, _line(section.get("batches"), key),
                                       f"flowback.batches: unknown key {key!r} (allowed: {', '.join(sorted(BATCHES_KEYS))})")
        fields = section.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise MappingFileError(self.path_text, _line(section, "fields") or _line(doc, "flowback"),
                                   "flowback needs `fields:` (national field ← the ministry's record)")
        self.fields: list[Field] = []
        for name, spec in fields.items():
            if name not in NATIONAL_FIELDS:
                raise MappingFileError(self.path_text, _line(fields, name),
                                       f"flowback.fields: {name!r} is not a national flowback field "
                                       f"(known: {', '.join(NATIONAL_FIELDS)})")
            # Compiled once (tongban.mapping.paths): a plain field path is a dict lookup, batches run it millions of times.
            self.fields.append(Field(name, spec, _line(fields, name), self))
        # A field that is only `path: NAME` (and `required:`) is a dict look-up; map_record does it inline, with the
        # engine's own rules (empty is missing; the value trimmed, nested values left out as normalise_record does).
        self._plan = [(f, _plain_source(f.spec), bool(f.spec.get("required"))) for f in self.fields]
        # Every field plain (the usual source file): one comprehension over text values does the whole record.
        self._all_plain = all(source is not None for _, source, _ in self._plan)
        self._pairs = [(f.name, source) for f, source, _ in self._plan]
        self._sources = [source for _, source in self._pairs]
        self._required = [(f, source) for f, source, required in self._plan if required]
        # Every field `path: <its own name>` (a ministry that already uses the national names): a trimmed record
        # with exactly those fields, in that order, is its own national record (map_flat).
        self._names = tuple(name for name, _ in self._pairs)
        self._identity = self._all_plain and all(name == source for name, source in self._pairs)
        missing = [f for f in REQUIRED_FIELDS if f not in fields]
        if missing:
            raise MappingFileError(self.path_text, _line(section, "fields"),
                                   f"flowback.fields must declare {', '.join(missing)} (routing needs them)")

    def _model(self, section: dict, key: str, model: type[BaseModel]):
        line = _line(section, key)
        try:
            data = include_section(section.get(key), self.path.parent, f"flowback.{key}")
            return model.model_validate(data or {})
        except ValueError as exc:  # pydantic's ValidationError is a ValueError; so is a missing include
            rule = str(exc).replace("\n", "; ") if not isinstance(exc, ValidationError) else "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(section)'}: {e['msg']}" for e in exc.errors())
            raise MappingFileError(self.path_text, line, f"flowback.{key}: {rule}") from None

    # --- records -------------------------------------------------------------------------------------
    def record_key(self, raw: dict) -> str | None:
        try:
            value = self.key_path.search(raw)
        except Exception:  # noqa: BLE001 - a record of the wrong shape has no key, it is not a crash
            return None
        return None if value in (None, "") else str(value).strip()

    def map_flat(self, raw: dict, flat: dict[str, str] | None) -> Record:
        """`map_record(raw)`, given `flat`, raw's trimmed non-empty text fields (records.trimmed_body) or None.
        When every field maps to itself and `flat` holds them all in the source file's order, map_record would build
        an equal dict in the same order (and no required field can be missing): `flat` is returned as it is."""
        if flat is not None and self._identity and tuple(flat) == self._names:
            return flat
        return self.map_record(raw)

    def map_record(self, raw: dict) -> Record:
        """The national record of one ministry record; raises MappingError naming the field, the rule and the
        source file's line. Empty values are left out, as the national tables do."""
        is_dict = isinstance(raw, dict)
        if self._all_plain and is_dict and set(map(type, map(raw.get, self._sources))) <= _TEXT_OR_NONE:
            for field, source in self._required:
                if not raw.get(source):  # None or "": missing (a whitespace-only value passes, then is dropped)
                    raise MappingError(self.record_key(raw), f"{field.name} ({source})", "required: value is missing",
                                       field.line)
            return {name: text for name, source in self._pairs
                    if (value := raw.get(source)) is not None and (text := value.strip())}
        ctx: dict[str, Any] = {"timezone": self.timezone}
        out: dict[str, Any] = {}
        id_type = None
        for field, source, required in self._plan:
            name = field.name
            if name == "APPLYERCARDCODE":
                ctx["id_type"] = id_type  # `transform: identity` validates by 证件类型
            try:
                if source is not None and is_dict:
                    got = raw.get(source)
                    if got is None or got == "" or got == []:
                        if required:
                            raise ValueError("required: value is missing")
                        got = None
                else:
                    got = field.value(raw, ctx)
            except ValueError as exc:  # the record's key is looked up only for the error that names it
                raise MappingError(self.record_key(raw), f"{name} ({field.spec.get('path', 'const')})", str(exc),
                                   field.line) from None
            if name == "APPLYERCARDTYPE":
                id_type = got
            # normalise_record, one value at a time: text trimmed, empty and nested values left out
            if type(got) is str:
                got = got.strip()
                if got:
                    out[name] = got
            elif got is not None and not isinstance(got, (dict, list)):
                text = str(got).strip()
                if text:
                    out[name] = text
        return out


_TEXT_OR_NONE = {str, type(None)}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # an unquoted JMESPath identifier: the path is one field


def _plain_source(spec: dict) -> str | None:
    """The field a `{path: NAME}` / `{path: NAME, required: …}` spec reads, else None (the engine's value runs)."""
    if set(spec) <= {"path", "required"} and isinstance(spec.get("path"), str) and _IDENTIFIER.fullmatch(spec["path"]):
        return spec["path"]
    return None


def is_flowback_mapping(mapping: Any) -> bool:
    return getattr(mapping, "kind", None) == "flowback"


def load_flowback_mapping(path: "str | Path") -> FlowbackMapping:
    """Load a flowback source file through the shared mapping loader; MappingFileError if it is not one."""
    from tongban.mapping import load_mapping

    mapping = load_mapping(path)
    if not is_flowback_mapping(mapping):
        raise MappingFileError(str(path), None, "not a flowback source file (it has no `flowback:` section)")
    return mapping
