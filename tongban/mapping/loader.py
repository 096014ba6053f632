"""Reading a mapping file: YAML with line numbers kept, environment references expanded in `source:` only, shape checked.

What the loader refuses (each a `MappingFileError` naming the file and the line):
  - a file over MAX_MAPPING_BYTES, not UTF-8, with NUL bytes, or not valid YAML;
  - YAML aliases (`*name`) and nesting deeper than MAX_NESTING (no "billion laughs", no RecursionError);
  - duplicate keys, unknown top-level keys, a missing required key;
  - a literal secret (a credential-looking key holding a value instead of naming a variable: `token_env: VAR`), and a
    `…_env` setting whose value is not a variable name (a pasted secret; the value is never quoted);
  - `${VAR}` anywhere outside `source:` — case fields, constants, defaults, maps and tables never see the
    environment, so a variable (a secret) can never travel to the platform inside a case field;
  - a `${VAR}` in `source:` that is not set and has no `${VAR:-default}`.
Tables (their paths, encodings and confinement) are read by `tables.py`; adapter settings are checked against the
adapter's declared model by `source_check.py`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import MappingFileError
from tongban.settings import environment_value

MAX_MAPPING_BYTES = 1024 * 1024  # a mapping file is configuration: anything larger is a mistake or an attack
MAX_NESTING = 32  # a mapping needs about 6 levels (case → section → fields → field → lookup); more is an attack


class LineDict(dict):
    """A YAML mapping that remembers the line of each key (1-based) so errors can point at it."""

    line: int = 0
    key_lines: dict[str, int]


class LineList(list):
    """A YAML sequence that remembers its own line and the line of each item."""

    line: int = 0
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    max_nesting = MAX_NESTING
    _depth = 0

    def compose_node(self, parent, index):
        # Anchors and aliases are refused: a mapping file needs none, and nested aliases ("billion laughs")
        # would make every walk over the document exponential.
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise MappingFileError(self.name, event.start_mark.line + 1,
                                   "YAML aliases (*name) are not allowed in mapping files")
        # The composer and the constructor recurse once per level: bound the depth before Python's stack does.
        self._depth += 1
        try:
            if self._depth > self.max_nesting:
                event = self.peek_event()
                raise MappingFileError(self.name, event.start_mark.line + 1,
                                       f"nested deeper than {self.max_nesting} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise MappingFileError(loader.name, key_node.start_mark.line + 1, "a key must be a plain value") from None
        if key in result:
            raise MappingFileError(loader.name, key_node.start_mark.line + 1, f"duplicate key {key!r}")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def parse_yaml(text: str, name: str, max_nesting: int = MAX_NESTING) -> Any:
    """YAML text → LineDict/LineList/scalars; MappingFileError (with the line) for bad YAML, aliases, deep nesting."""
    loader = _LineLoader(text)
    loader.name, loader.max_nesting = name, max_nesting
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise MappingFileError(name, line, f"not valid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise MappingFileError(name, None, f"not valid YAML: {exc}") from exc
    finally:
        loader.dispose()


_ENV_REF = re.compile(r"\$\{([A-Za-z0-9_]+)(?::-([^}]*))?\}")
SECRET_VARIABLE = re.compile(r"(PASSWORD|PASSWD|PASS|SECRET|TOKEN|API_?KEY|KEY|CREDENTIALS?|PRIVATE)", re.I)


def line_of(node: Any, key: Any) -> int | None:
    """The line of `key` inside a LineDict (or of item `key` inside a LineList), else the node's own line."""
    if isinstance(node, LineDict):
        return node.key_lines.get(key, node.line or None)
    if isinstance(node, LineList):
        if isinstance(key, int) and 0 <= key < len(node.item_lines):
            return node.item_lines[key]
        return node.line or None
    return None


def expand_env(value: Any, expanded: list | None = None, loc: tuple = ()) -> Any:
    """`${NAME}` / `${NAME:-default}` in strings: URLs and paths may differ per machine; secrets are
    never written in the file at all, only the names of the variables that hold them.

    `expanded` collects (loc, variable name) of every reference, so that commands which print settings can mask
    a value that came from a secret-looking variable (`adapter describe`)."""
    if isinstance(value, str):
        def sub(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if expanded is not None:
                expanded.append((loc, name))
            got = environment_value(name)
            if got is None:
                if default is None:
                    raise KeyError(name)
                return default
            return got
        return _ENV_REF.sub(sub, value)
    if isinstance(value, LineDict):
        out = LineDict({k: expand_env(v, expanded, (*loc, k)) for k, v in value.items()})
        out.line, out.key_lines = value.line, value.key_lines
        return out
    if isinstance(value, LineList):
        items = LineList(expand_env(v, expanded, (*loc, i)) for i, v in enumerate(value))
        items.line, items.item_lines = value.line, value.item_lines
        return items
    if isinstance(value, dict):
        return {k: expand_env(v, expanded, (*loc, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, expanded, (*loc, i)) for i, v in enumerate(value)]
    return value


def _refuse_env_refs(path: str, node: Any, where: str, line: int | None = None) -> None:
    """`${…}` outside `source:` is an error, not a silent literal: the author meant an expansion that will not happen."""
    if isinstance(node, str):
        match = _ENV_REF.search(node)
        if match:
            raise MappingFileError(path, line, f"{where}: `${{{match.group(1)}}}` — environment variables expand only "
                                               f"inside `source:` settings, never in case fields, constants, "
                                               f"defaults or tables")
    elif isinstance(node, dict):
        for key, value in node.items():
            _refuse_env_refs(path, key, where, line_of(node, key) or line)
            _refuse_env_refs(path, value, f"{where}.{key}", line_of(node, key) or line)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _refuse_env_refs(path, value, f"{where}[{index}]", line_of(node, index) or line)


TOP_KEYS = {"system", "department", "description", "schedule", "retries", "source", "record", "tables", "case",
            "evaluation_scale", "identity",
            "concurrency", "maintenance",  # scheduling: the system's Airflow pool size, its maintenance windows
            "flowback",  # a ministry flowback source (tongban.flowback.mapping) has `flowback:` instead of `case:`
            "submit"}  # a department that takes bundle members (一件事一次办, tongban.bundle) says how: settings, like source:
REQUIRED_TOP = ("system", "source", "record", "case")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
SECRET_HINTS = re.compile(r"(password|secret|token|api_key|apikey)$", re.I)


def _check_no_secrets(path: str, node: Any) -> None:
    """Secrets never sit in mappings/: a key that looks like a credential must name a variable (…_env)."""
    if isinstance(node, LineDict):
        for key, value in node.items():
            if isinstance(key, str) and SECRET_HINTS.search(key) and isinstance(value, str) and value:
                raise MappingFileError(path, node.key_lines.get(key),
                                       f"{key!r} holds a literal secret; name an environment variable instead "
                                       f"({key}_env: VARIABLE_NAME)")
            if isinstance(key, str) and key.endswith("_env") and not (isinstance(value, str) and _VARIABLE.match(value)):
                # the value is not quoted: someone may have pasted the secret itself here
                raise MappingFileError(path, node.key_lines.get(key),
                                       f"{key!r} must name an environment variable (letters, digits, _), not hold a value")
            _check_no_secrets(path, value)
    elif isinstance(node, list):
        for item in node:
            _check_no_secrets(path, item)


def read_mapping_document(path: Path, *, top_keys: set[str] = TOP_KEYS,
                          required: tuple[str, ...] = REQUIRED_TOP) -> tuple[LineDict, list]:
    """The checked, env-expanded document of a mapping file and the (loc, variable) list of its `${…}` references.
    `top_keys`/`required` let other YAML files of the same language (flowback sources) declare their own sections."""
    try:
        if path.stat().st_size > MAX_MAPPING_BYTES:
            raise MappingFileError(str(path), None, f"mapping file larger than {MAX_MAPPING_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingFileError(str(path), None, f"cannot read mapping file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise MappingFileError(str(path), None, f"mapping file is not UTF-8 (byte {exc.start})") from exc
    if "\x00" in text:
        raise MappingFileError(str(path), None, "mapping file contains NUL bytes")
    doc = parse_yaml(text, str(path))
    if not isinstance(doc, LineDict):
        raise MappingFileError(str(path), 1, "a mapping file is a YAML mapping (system:, source:, record:, case:)")
    for key in doc:
        if key not in top_keys:
            raise MappingFileError(str(path), doc.key_lines.get(key),
                                   f"unknown key {key!r}{_did_you_mean(key, top_keys)} "
                                   f"(allowed: {', '.join(sorted(top_keys))})")
    for key in required:
        if key == "case" and "flowback" in doc:
            continue  # a ministry flowback source (tongban.flowback.mapping) maps onto `flowback.fields` instead
        if key not in doc:
            raise MappingFileError(str(path), 1, f"missing required key {key!r}")
    _check_no_secrets(str(path), doc)
    for key, value in doc.items():
        if key == "flowback" and isinstance(value, dict):
            # A flowback source's fields are case-like (no expansion); its sinks and batches are settings, like source:
            _refuse_env_refs(str(path), value.get("fields"), "flowback.fields", value.key_lines.get("fields"))
        elif key not in ("source", "submit"):
            _refuse_env_refs(str(path), value, key, doc.key_lines.get(key))
    expanded: list = []
    if "source" in doc:
        try:
            source = expand_env(doc["source"], expanded)
        except KeyError as exc:
            line = _line_of_ref(doc["source"], exc.args[0])
            raise MappingFileError(str(path), line, f"environment variable {exc.args[0]} is not set "
                                                    f"and has no default (${{{exc.args[0]}:-default}})") from exc
        doc["source"] = source
    if "submit" in doc:
        try:
            doc["submit"] = expand_env(doc["submit"], expanded, ("submit",))
        except KeyError as exc:
            raise MappingFileError(str(path), _line_of_ref(doc["submit"], exc.args[0]),
                                   f"environment variable {exc.args[0]} is not set and has no default") from exc
    if isinstance(doc.get("flowback"), dict):
        section = doc["flowback"]
        for key in ("sinks", "batches", "routing"):
            if key in section:
                try:
                    section[key] = expand_env(section[key], expanded, ("flowback", key))
                except KeyError as exc:
                    raise MappingFileError(str(path), section.key_lines.get(key),
                                           f"environment variable {exc.args[0]} is not set and has no default") from exc
    return doc, expanded


def _line_of_ref(node: Any, name: str, line: int | None = None) -> int | None:
    if isinstance(node, str):
        return line if f"${{{name}" in node else None
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found = _line_of_ref(value, name, line_of(node, key))
        if found:
            return found
    return None


def _did_you_mean(word: Any, choices) -> str:
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_mapping(path: str | Path):
    """Parse and check a mapping file; returns a ready `Mapping` (its tables read, its paths compiled)."""
    from .engine import Mapping

    path = Path(path)
    doc, expanded = read_mapping_document(path)
    if "flowback" in doc:
        from tongban.flowback.mapping import FlowbackMapping

        mapping = FlowbackMapping(doc, path)
        mapping.env_refs = expanded
        return mapping
    mapping = Mapping(doc, path)
    mapping.env_refs = expanded
    return mapping
