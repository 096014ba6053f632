"""The mapping engine: a legacy record in, a case snapshot out (or a MappingError naming the field).

Paths into the legacy record are JMESPath expressions (a well-kept path language, not a home-made one).
A field spec is a small dict:
  path: JMESPath into the record        const: a constant           default: sent as it is when the path is empty
  map: {legacy: national}               lookup: {table, key, value} transform: a name in transforms.py
  required: true|false                  format / timezone / scale: options of the transform
A section (acceptance, conclusion, evaluation) may say `when: <path>`: it exists only when that path has a value.
`steps` and `suspensions` say `each: <path>` and `fields:` for the items of a list.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from .errors import MappingError, MappingFileError
from .loader import LineDict, load_table
from .transforms import TRANSFORMS

SPEC_KEYS = {"path", "const", "default", "map", "lookup", "transform", "required", "format", "timezone", "scale",
             "id_type_from"}
LIST_SECTIONS = ("steps", "suspensions")
OPTIONAL_SECTIONS = ("acceptance", "conclusion", "evaluation")
_MISSING = object()


class _Field:
    def __init__(self, name: str, spec: Any, line: int | None, mapping: "Mapping"):
        self.name, self.line = name, line
        if not isinstance(spec, dict):
            spec = {"const": spec}  # a bare value is a constant
        unknown = set(spec) - SPEC_KEYS
        if unknown:
            raise MappingFileError(mapping.path_text, line, f"field {name}: unknown option(s) {sorted(unknown)} "
                                                            f"(allowed: {', '.join(sorted(SPEC_KEYS))})")
        if "path" not in spec and "const" not in spec and "default" not in spec:
            raise MappingFileError(mapping.path_text, line, f"field {name}: needs path, const or default")
        self.spec = spec
        self.path = None
        if "path" in spec:
            try:
                self.path = jmespath.compile(str(spec["path"]))
            except JMESPathError as exc:
                raise MappingFileError(mapping.path_text, line, f"field {name}: bad path {spec['path']!r}: {exc}") from exc
        transform = spec.get("transform")
        if transform is not None and transform not in TRANSFORMS:
            raise MappingFileError(mapping.path_text, line, f"field {name}: unknown transform {transform!r} "
                                                            f"(known: {', '.join(sorted(TRANSFORMS))})")
        self.lookup = None
        if "lookup" in spec:
            lk = spec["lookup"]
            table = mapping.tables.get(lk.get("table")) if isinstance(lk, dict) else None
            if table is None:
                raise MappingFileError(mapping.path_text, line, f"field {name}: lookup names unknown table "
                                                                f"{lk.get('table') if isinstance(lk, dict) else lk!r}")
            self.lookup = {row[lk["key"]]: row[lk["value"]] for row in table}
            self.lookup_table = lk["table"]

    def value(self, record: dict, ctx: dict) -> Any:
        spec = self.spec
        if "const" in spec:
            value = spec["const"]
        else:
            value = self.path.search(record) if self.path is not None else None
            if value in (None, "", []):
                # A default is the value to send, already in the national form: no map, lookup or transform.
                if spec.get("required") and "default" not in spec:
                    raise ValueError("required value is missing")
                return spec.get("default")
        if value in (None, ""):
            if spec.get("required"):
                raise ValueError("required value is missing")
            return None
        if "map" in spec:
            key = str(value).strip()
            if key not in {str(k) for k in spec["map"]}:
                raise ValueError(f"value {key!r} is not in the field's map ({', '.join(map(str, spec['map']))})")
            value = {str(k): v for k, v in spec["map"].items()}[key]
        if self.lookup is not None:
            key = str(value).strip()
            if key not in self.lookup:
                raise ValueError(f"{key!r} is not in table {self.lookup_table}")
            value = self.lookup[key]
        if spec.get("transform"):
            value = TRANSFORMS[spec["transform"]](value, spec, ctx)
        return value


Field = _Field  # public name: other mapping kinds (tongban.flowback.mapping) compile their fields with it


class _Section:
    """A group of fields (application, acceptance, …), optionally conditional or repeated."""

    def __init__(self, name: str, node: Any, mapping: "Mapping", line: int | None):
        self.name = name
        if not isinstance(node, dict):
            raise MappingFileError(mapping.path_text, line, f"case.{name} must be a mapping of fields")
        lines = getattr(node, "key_lines", {})
        self.when = jmespath.compile(node["when"]) if "when" in node else None
        self.each = jmespath.compile(node["each"]) if "each" in node else None
        if name in LIST_SECTIONS and self.each is None:
            raise MappingFileError(mapping.path_text, line, f"case.{name} needs `each:` (the path of the legacy list)")
        fields_node = node.get("fields", node) if self.each is not None else node
        field_lines = getattr(fields_node, "key_lines", lines)
        self.fields = [_Field(f"{name}.{key}", spec, field_lines.get(key), mapping)
                       for key, spec in fields_node.items() if key not in ("when", "each", "fields")]

    def _one(self, item: dict, key: str | None, ctx: dict) -> dict:
        out: dict[str, Any] = {}
        for field in self.fields:
            short = field.name.split(".", 1)[1]
            if short.endswith("id_number"):
                ctx["id_type"] = out.get(short.replace("id_number", "id_type"))
            try:
                out[short] = field.value(item, ctx)
            except ValueError as exc:
                raise MappingError(key, f"{field.name} ({field.spec.get('path', 'const')})", str(exc), field.line) from None
        return out

    def build(self, record: dict, key: str | None, ctx: dict) -> Any:
        if self.each is not None:
            items = self.each.search(record) or []
            if not isinstance(items, list):
                raise MappingError(key, self.name, f"`each` path does not give a list (got {type(items).__name__})")
            return [self._one(item, key, ctx) for item in items]
        if self.when is not None and self.when.search(record) in (None, "", [], {}):
            return None
        return self._one(record, key, ctx)


class Mapping:
    """A loaded mapping file, ready to map records."""

    def __init__(self, doc: LineDict, path: Path):
        self.doc, self.path = doc, path
        self.path_text = str(path)
        self.system: str = str(doc["system"])
        self.department: str = str(doc.get("department", ""))
        self.schedule = doc.get("schedule")
        self.retries: dict = dict(doc.get("retries") or {})
        self.source: dict = dict(doc["source"])
        if "adapter" not in self.source:
            raise MappingFileError(self.path_text, doc.key_lines.get("source"), "source needs `adapter:` (rest, soap, files …)")
        record = doc["record"]
        if "key" not in record:
            raise MappingFileError(self.path_text, doc.key_lines.get("record"), "record needs `key:` (the legacy case key path)")
        self.key_path = jmespath.compile(str(record["key"]))
        self.watermark_field = record.get("watermark")
        self.watermark_path = jmespath.compile(str(self.watermark_field)) if self.watermark_field else None
        self.timezone = record.get("timezone", "Asia/Shanghai")
        self.tables: dict[str, list[dict[str, str]]] = {}
        tables_node = doc.get("tables") or {}
        for name, rel in tables_node.items():
            line = getattr(tables_node, "key_lines", {}).get(name)
            self.tables[name] = load_table(path.parent / rel, self.path_text, line)
        case = doc["case"]
        lines = case.key_lines
        self.top_fields = []
        self.sections: dict[str, _Section] = {}
        for key, node in case.items():
            if key in ("application", *OPTIONAL_SECTIONS, *LIST_SECTIONS):
                self.sections[key] = _Section(key, node, self, lines.get(key))
            else:
                self.top_fields.append(_Field(key, node, lines.get(key), self))
        if "application" not in self.sections:
            raise MappingFileError(self.path_text, case.line, "case needs an `application:` section (办事申请)")
        for needed in ("item_code", "region"):
            if needed not in {f.name for f in self.top_fields}:
                raise MappingFileError(self.path_text, case.line, f"case needs `{needed}:`")

    def record_key(self, record: dict) -> str | None:
        key = self.key_path.search(record)
        return None if key in (None, "") else str(key).strip()

    def watermark_of(self, record: dict) -> str | None:
        if self.watermark_path is None:
            return None
        value = self.watermark_path.search(record)
        return None if value in (None, "") else str(value)

    def map_record(self, record: dict) -> dict:
        """The case snapshot of one legacy record; raises MappingError naming the field and the rule."""
        key = self.record_key(record)
        if key is None:
            raise MappingError(None, "record.key", f"the record has no value at key path {self.doc['record']['key']!r}")
        ctx: dict[str, Any] = {"timezone": self.timezone}
        snapshot: dict[str, Any] = {"source_system": self.system, "source_key": key}
        for field in self.top_fields:
            try:
                snapshot[field.name] = field.value(record, ctx)
            except ValueError as exc:
                raise MappingError(key, f"{field.name} ({field.spec.get('path', 'const')})", str(exc), field.line) from None
        for name in ("application", *OPTIONAL_SECTIONS, *LIST_SECTIONS):
            section = self.sections.get(name)
            if section is None:
                snapshot[name] = [] if name in LIST_SECTIONS else None
            else:
                snapshot[name] = section.build(record, key, ctx)
        if ctx.get("flags"):
            snapshot["_flags"] = ctx["flags"]
        return snapshot
