"""The mapping engine: a legacy record in, a case snapshot out (or a MappingError naming record, field and rule).

Paths into the legacy record are JMESPath expressions (a well-kept path language, not a home-made one), compiled once
when the mapping is loaded (paths.py): a plain field path is a dict lookup, JMESPath's interpreter runs only for the
paths that need it. Each field's rule is compiled once too (`FieldRule.value`: only the steps the field has).
A field spec is a small dict:
  path: JMESPath into the record        const: a constant           default: sent as it is when the path is empty
  map: {legacy: national}               lookup: {table, key, value} transform: a name in transforms.py
  required: true|false                  format / timezone / scale / retired: options of the transform
A section (acceptance, conclusion, evaluation) may say `when: <path>`: it exists only when that path has a value.
`steps` and `suspensions` say `each: <path>` and `fields:` for the items of a list.

What a record can fail on (each a MappingError with the record key, the field — `steps[1].started_at` inside a
list — the rule and the mapping file's line): `record.key` (no key), `record` (nested deeper than MAX_RECORD_DEPTH),
`required`, `map`, `lookup <table>`, `transform <name>`, `path` (a JMESPath function given the wrong type), `each`
(not a list). Anything the mapping rewrote on the way (a retired region code translated to its successor, a town code
rolled up to its county) is appended to the `notes` list given to `map_record`; the pipeline writes them into the
ledger's "fetched" event, so `tongban trace` shows them.
"""
from __future__ import annotations

from itertools import repeat
from pathlib import Path
from typing import Any

from jmespath.exceptions import JMESPathError

from .errors import MappingError, MappingFileError
from .loader import LineDict, _did_you_mean
from .paths import CompiledPath, compile_path
from .tables import load_tables
from .transforms import TRANSFORMS, compile_transform

SPEC_KEYS = {"path", "const", "default", "map", "lookup", "transform", "required", "format", "timezone", "scale",
             "id_type_from", "retired"}
LOOKUP_KEYS = {"table", "key", "value"}
RECORD_KEYS = {"key", "watermark", "timezone"}
LIST_SECTIONS = ("steps", "suspensions")
OPTIONAL_SECTIONS = ("acceptance", "conclusion", "evaluation")
MAX_RECORD_DEPTH = 64  # legacy case records are 2–4 levels deep; deeper is damage or an attack (no RecursionError)
_FIELD_ERRORS = (ValueError, TypeError, JMESPathError, RecursionError)
_NESTED = (dict, list, tuple)
_EMPTY = object()  # "no default": a default may itself be None


def _compile(expr: Any, where: str, path_text: str, line: int | None) -> CompiledPath:
    """A path compiled once (tongban.mapping.paths): plain field paths become dict lookups, the rest is JMESPath."""
    try:
        return compile_path(str(expr))
    except JMESPathError as exc:
        raise MappingFileError(path_text, line, f"{where}: bad path {expr!r}: {exc}") from None


def _check_timezone(name: Any, where: str, path_text: str, line: int | None) -> None:
    """A zone the transforms will use for every record: checked once, here, not per record at run time."""
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(str(name))
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise MappingFileError(path_text, line, f"{where}: unknown time zone {name!r} (e.g. Asia/Shanghai)") from None


def nesting_exceeds(value: Any, limit: int) -> bool:
    """True when dicts/lists nest deeper than `limit` (walked without recursion, stopping at the limit)."""
    if not isinstance(value, _NESTED):
        return False
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        nested = [child for child in children if isinstance(child, _NESTED)]  # only what nests is walked
        if nested:
            stack.extend(zip(nested, repeat(depth + 1)))
    return False


def _keyed(table: dict, missing) -> Any:
    """A mapping step: the value (as trimmed text) looked up in `table`; a key not in it is a ValueError saying
    `missing(key)` (a `map:` or a `lookup:` table)."""
    def by_key(value):
        key = str(value).strip()
        if key not in table:
            raise ValueError(missing(key))
        return table[key]
    return by_key


class FieldRule:
    """One field: where its value comes from and the rules it must pass.

    `mapping` is anything with `path_text`, `tables` and `table_columns` (a `Mapping`, or the loaded source file of
    another record kind — a flowback batch — built with `read_mapping_document` and `load_tables`): the field language
    is the same for every kind of record. `value(record, ctx)` raises ValueError/TypeError/JMESPathError whose text
    starts with the rule; `error(key, name, exc)` turns that into the MappingError the pipeline quarantines.
    """

    def __init__(self, name: str, spec: Any, line: int | None, mapping: "Mapping"):
        self.name, self.line = name, line
        if not isinstance(spec, dict):
            spec = {"const": spec}  # a bare value is a constant
        where = f"field {name}"
        unknown = sorted(set(spec) - SPEC_KEYS, key=str)
        if unknown:
            raise MappingFileError(mapping.path_text, line, f"{where}: unknown option {unknown[0]!r}"
                                                            f"{_did_you_mean(unknown[0], SPEC_KEYS)} "
                                                            f"(allowed: {', '.join(sorted(SPEC_KEYS))})")
        if "path" not in spec and "const" not in spec and "default" not in spec:
            raise MappingFileError(mapping.path_text, line, f"{where}: needs path, const or default")
        self.spec = spec
        self.path = _compile(spec["path"], where, mapping.path_text, line) if "path" in spec else None
        transform = spec.get("transform")
        if transform is not None and (not isinstance(transform, str) or transform not in TRANSFORMS):
            raise MappingFileError(mapping.path_text, line, f"{where}: unknown transform {transform!r}"
                                                            f"{_did_you_mean(transform, TRANSFORMS)} "
                                                            f"(known: {', '.join(sorted(TRANSFORMS))})")
        if "retired" in spec and (transform != "region" or spec["retired"] not in ("translate", "reject")):
            raise MappingFileError(mapping.path_text, line, f"{where}: `retired:` is an option of transform: region, "
                                                            f"either translate (the default) or reject")
        if "timezone" in spec:
            _check_timezone(spec["timezone"], where, mapping.path_text, line)
        if "map" in spec and not isinstance(spec["map"], dict):
            raise MappingFileError(mapping.path_text, line, f"{where}: map must be {{legacy value: national value}}")
        self.map = {str(k): v for k, v in spec["map"].items()} if "map" in spec else None
        self.lookup, self.lookup_table = None, None
        if "lookup" in spec:
            self._compile_lookup(spec["lookup"], mapping)
        # The field's value, compiled once: `value(record, ctx)` raises ValueError/TypeError/JMESPathError whose
        # text starts with the rule that failed.
        self.value = self._compile_value()

    def _compile_lookup(self, lk: Any, mapping: "Mapping") -> None:
        where, line = f"field {self.name}: lookup", self.line
        if not isinstance(lk, dict) or set(lk) != LOOKUP_KEYS or not all(isinstance(v, str) for v in lk.values()):
            raise MappingFileError(mapping.path_text, line, f"{where} needs exactly {{table, key, value}} (names)")
        table = mapping.tables.get(lk["table"])
        if table is None:
            raise MappingFileError(mapping.path_text, line, f"{where} names unknown table {lk['table']!r} "
                                                            f"(declared: {', '.join(mapping.tables) or 'none'})")
        columns = mapping.table_columns[lk["table"]]
        for role in ("key", "value"):
            if lk[role] not in columns:
                raise MappingFileError(mapping.path_text, line, f"{where}: table {lk['table']} has no column "
                                                                f"{lk[role]!r} (columns: {', '.join(columns)})")
        self.lookup = {(row.get(lk["key"]) or "").strip(): row.get(lk["value"]) for row in table}
        self.lookup_table = lk["table"]

    def _compile_value(self):
        """`value(record, ctx)`, built once from the spec: only the steps this field has, each decided here."""
        spec = self.spec
        required = bool(spec.get("required"))
        has_const = "const" in spec
        const, default = spec.get("const"), spec.get("default", _EMPTY)
        search = self.path.search if self.path is not None else None
        expression = spec.get("path")
        steps = []
        if self.map is not None:
            table = self.map
            steps.append(_keyed(table, lambda key: f"map: value {key!r} is not in the field's map ({', '.join(table)})"))
        if self.lookup is not None:
            table_name = self.lookup_table
            steps.append(_keyed(self.lookup, lambda key: f"lookup: {key!r} is not in table {table_name}"))
        name = spec.get("transform")
        transform = compile_transform(name, spec) if name else None

        def value(record: Any, ctx: dict) -> Any:
            if has_const:
                got = const
            else:
                try:
                    got = search(record) if search is not None else None
                except JMESPathError as exc:
                    raise ValueError(f"path {expression!r}: {exc}") from None
                if got is None or got == "" or got == []:
                    # A default is the value to send, already in the national form: no map, lookup or transform.
                    if default is _EMPTY:
                        if required:
                            raise ValueError("required: value is missing")
                        return None
                    return default
            if got is None or got == "":
                if required:
                    raise ValueError("required: value is missing")
                return None
            for step in steps:
                got = step(got)
            if transform is not None:
                try:
                    got = transform(got, ctx)
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"transform {name}: {exc}") from None
            return got
        return value

    def error(self, key: str | None, display: str, exc: Exception) -> MappingError:
        rule = "value nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return MappingError(key, f"{display} ({self.spec.get('path', 'const')})", rule, self.line)


class Section:
    """A group of fields (application, acceptance, …), optionally conditional or repeated."""

    def __init__(self, name: str, node: Any, mapping: "Mapping", line: int | None):
        self.name, self.line = name, line
        if not isinstance(node, dict):
            raise MappingFileError(mapping.path_text, line, f"case.{name} must be a mapping of fields")
        lines = getattr(node, "key_lines", {})
        self.when = _compile(node["when"], f"case.{name}.when", mapping.path_text, lines.get("when")) \
            if "when" in node else None
        self.each = _compile(node["each"], f"case.{name}.each", mapping.path_text, lines.get("each")) \
            if "each" in node else None
        if name in LIST_SECTIONS and self.each is None:
            raise MappingFileError(mapping.path_text, line, f"case.{name} needs `each:` (the path of the legacy list)")
        if self.each is not None:
            if not isinstance(node.get("fields"), dict):
                raise MappingFileError(mapping.path_text, line, f"case.{name} needs `fields:` (the fields of one item)")
            stray = [k for k in node if k not in ("each", "fields", "when")]
            if stray:
                raise MappingFileError(mapping.path_text, lines.get(stray[0]), f"case.{name}: unknown key {stray[0]!r} "
                                                                               f"(a list section has each, fields)")
            fields_node = node["fields"]
        else:
            fields_node = node
        field_lines = getattr(fields_node, "key_lines", lines)
        self.fields = [FieldRule(f"{name}.{key}", spec, field_lines.get(key), mapping)
                       for key, spec in fields_node.items() if key not in ("when", "each", "fields")]

        # What each field of a record needs, worked out once: its short name, the id type it is checked by.
        self._plan = [(field, short, short.replace("id_number", "id_type") if short.endswith("id_number") else None,
                       f"{name}.{short}") for field in self.fields for short in (field.name.split(".", 1)[1],)]

    def _one(self, item: Any, key: str | None, ctx: dict, prefix: str | None = None) -> dict:
        out: dict[str, Any] = {}
        for field, short, id_type_of, display in self._plan:
            if id_type_of is not None:
                ctx["id_type"] = out.get(id_type_of)
            ctx["field"] = display if prefix is None else f"{prefix}.{short}"
            try:
                out[short] = field.value(item, ctx)
            except _FIELD_ERRORS as exc:
                raise field.error(key, ctx["field"], exc) from None
        return out

    def build(self, record: Any, key: str | None, ctx: dict) -> Any:
        try:
            items = self.each.search(record) if self.each is not None else None
            present = self.when.search(record) if self.when is not None else True
        except JMESPathError as exc:
            raise MappingError(key, self.name, f"path: {exc}", self.line) from None
        if self.each is not None:
            items = items or []
            if not isinstance(items, list):
                raise MappingError(key, self.name, f"each: the path does not give a list (got {type(items).__name__})",
                                   self.line)
            return [self._one(item, key, ctx, f"{self.name}[{index}]") for index, item in enumerate(items)]
        if present is None or present == "" or present == [] or present == {}:
            return None
        return self._one(record, key, ctx)


class Mapping:
    """A loaded mapping file, ready to map records."""

    env_refs: list  # (loc inside source, variable name) of every ${…} the loader expanded

    def __init__(self, doc: LineDict, path: Path):
        self.doc, self.path = doc, path
        self.path_text = str(path)
        self.env_refs = []
        lines = doc.key_lines
        for section in ("source", "record", "case"):
            if not isinstance(doc.get(section), dict):
                raise MappingFileError(self.path_text, lines.get(section), f"{section}: must be a mapping of settings")
        self.system: str = str(doc["system"])
        self.department: str = str(doc.get("department", ""))
        self.schedule = doc.get("schedule")
        self.retries: dict = dict(doc.get("retries") or {})
        self.source_node: LineDict = doc["source"]  # keeps the lines of every setting for source_check
        self.source: dict = dict(doc["source"])
        if "adapter" not in self.source:
            raise MappingFileError(self.path_text, lines.get("source"), "source needs `adapter:` (rest, soap, files …)")
        record = doc["record"]
        record_lines = getattr(record, "key_lines", {})
        for key in record:
            if key not in RECORD_KEYS:
                raise MappingFileError(self.path_text, record_lines.get(key), f"record: unknown key {key!r}"
                                       f"{_did_you_mean(key, RECORD_KEYS)} (allowed: key, watermark, timezone)")
        if "key" not in record:
            raise MappingFileError(self.path_text, lines.get("record"), "record needs `key:` (the legacy case key path)")
        self.key_line = record_lines.get("key")
        self.key_path = _compile(record["key"], "record.key", self.path_text, self.key_line)
        self.watermark_field = record.get("watermark")
        self.watermark_path = _compile(self.watermark_field, "record.watermark", self.path_text,
                                       record_lines.get("watermark")) if self.watermark_field else None
        self.timezone = record.get("timezone", "Asia/Shanghai")
        _check_timezone(self.timezone, "record.timezone", self.path_text, record_lines.get("timezone"))
        self.tables, self.table_columns, self.table_specs = load_tables(doc, path)
        case = doc["case"]
        case_lines = case.key_lines
        self.top_fields = []
        self.sections: dict[str, Section] = {}
        for key, node in case.items():
            if key in ("application", *OPTIONAL_SECTIONS, *LIST_SECTIONS):
                self.sections[key] = Section(key, node, self, case_lines.get(key))
            else:
                self.top_fields.append(FieldRule(key, node, case_lines.get(key), self))
        self._section_order = [(name, self.sections.get(name), name in LIST_SECTIONS)
                               for name in ("application", *OPTIONAL_SECTIONS, *LIST_SECTIONS)]
        if "application" not in self.sections:
            raise MappingFileError(self.path_text, case.line, "case needs an `application:` section (办事申请)")
        for needed in ("item_code", "region"):
            if needed not in {f.name for f in self.top_fields}:
                raise MappingFileError(self.path_text, case.line, f"case needs `{needed}:`")

    def field_line(self, loc: tuple) -> int | None:
        """The mapping file's line of the field at a snapshot location (`('application', 'case_type')`,
        `('steps', 0, 'status')`, `('region',)`): validation errors of a mapped case point at the rule that made it."""
        names = [part for part in loc if isinstance(part, str)]
        if not names:
            return None
        section = self.sections.get(names[0])
        if section is None:
            return next((f.line for f in self.top_fields if f.name == names[0]), None)
        if len(names) > 1:
            wanted = f"{names[0]}.{names[1]}"
            found = next((f.line for f in section.fields if f.name == wanted), None)
            if found:
                return found
        return section.line

    def record_key(self, record: Any) -> str | None:
        try:
            key = self.key_path.search(record)  # JMESPath walks the expression, not the record: safe on deep records
        except (JMESPathError, RecursionError):
            return None
        if isinstance(key, (dict, list)):
            return None  # a key is a value, not a structure
        return None if key is None or key == "" else str(key).strip() or None

    def watermark_of(self, record: dict) -> str | None:
        if self.watermark_path is None:
            return None
        try:
            value = self.watermark_path.search(record)
        except JMESPathError:
            return None
        return None if value is None or value == "" else str(value)

    def map_record(self, record: Any, notes: list[str] | None = None) -> dict:
        """The case snapshot of one legacy record; raises MappingError naming the record, the field and the rule.
        `notes`, when given, receives what the mapping rewrote on the way (for the ledger's "fetched" event)."""
        if not isinstance(record, dict):
            raise MappingError(None, "record", f"a record is an object of fields, not {type(record).__name__}")
        if nesting_exceeds(record, MAX_RECORD_DEPTH):
            raise MappingError(self.record_key(record), "record",
                               f"nested deeper than {MAX_RECORD_DEPTH} levels", None)
        key = self.record_key(record)
        if key is None:
            raise MappingError(None, "record.key", f"the record has no value at key path {self.doc['record']['key']!r}",
                               self.key_line)
        ctx: dict[str, Any] = {"timezone": self.timezone}
        snapshot: dict[str, Any] = {"source_system": self.system, "source_key": key}
        for field in self.top_fields:
            ctx["field"] = field.name
            try:
                snapshot[field.name] = field.value(record, ctx)
            except _FIELD_ERRORS as exc:
                raise field.error(key, field.name, exc) from None
        for name, section, is_list in self._section_order:
            if section is None:
                snapshot[name] = [] if is_list else None
            else:
                snapshot[name] = section.build(record, key, ctx)
        if ctx.get("flags"):
            snapshot["_flags"] = ctx["flags"]
        if notes is not None:
            notes.extend(ctx.get("notes", []))
        return snapshot

