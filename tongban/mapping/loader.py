"""Reading a mapping file: YAML with line numbers kept, environment references expanded, shape checked."""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import MappingFileError


class LineDict(dict):
    """A YAML mapping that remembers the line of each key (1-based) so errors can point at it."""

    line: int = 0
    key_lines: dict[str, int]


MAX_MAPPING_BYTES = 1024 * 1024  # a mapping file is configuration: anything larger is a mistake or an attack


class _LineLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        # Anchors and aliases are refused: a mapping file needs none, and nested aliases ("billion laughs")
        # would make every walk over the document exponential.
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise MappingFileError(self.name, event.start_mark.line + 1,
                                   "YAML aliases (*name) are not allowed in mapping files")
        return super().compose_node(parent, index)


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise MappingFileError(loader.name, key_node.start_mark.line + 1, f"duplicate key {key!r}")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_ENV_REF = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def expand_env(value: Any) -> Any:
    """`${NAME}` / `${NAME:-default}` in strings: URLs and paths may differ per machine; secrets are
    never written in the file at all, only the names of the variables that hold them."""
    if isinstance(value, str):
        def sub(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            got = os.environ.get(name)
            if got is None:
                if default is None:
                    raise KeyError(name)
                return default
            return got
        return _ENV_REF.sub(sub, value)
    if isinstance(value, LineDict):
        out = LineDict({k: expand_env(v) for k, v in value.items()})
        out.line, out.key_lines = value.line, value.key_lines
        return out
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


TOP_KEYS = {"system", "department", "description", "schedule", "retries", "source", "record", "tables", "case",
            "evaluation_scale", "identity",
            "flowback"}  # a ministry flowback source (tongban.flowback.mapping) has `flowback:` instead of `case:`
REQUIRED_TOP = ("system", "source", "record", "case")
SECRET_HINTS = re.compile(r"(password|secret|token|api_key|apikey)$", re.I)


def _check_no_secrets(path: str, node: Any) -> None:
    """Secrets never sit in mappings/: a key that looks like a credential must name a variable (…_env)."""
    if isinstance(node, LineDict):
        for key, value in node.items():
            if isinstance(key, str) and SECRET_HINTS.search(key) and isinstance(value, str) and value:
                raise MappingFileError(path, node.key_lines.get(key),
                                       f"{key!r} holds a literal secret; name an environment variable instead "
                                       f"({key}_env: VARIABLE_NAME)")
            _check_no_secrets(path, value)
    elif isinstance(node, list):
        for item in node:
            _check_no_secrets(path, item)


def load_table(path: Path, mapping_path: str, line: int | None) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return list(csv.DictReader(handle))
    except OSError as exc:
        raise MappingFileError(mapping_path, line, f"cannot read table {path}: {exc.strerror}") from exc


def load_mapping(path: str | Path):
    """Parse and check a mapping file; returns a ready `Mapping`."""
    from .engine import Mapping

    path = Path(path)
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
    loader = _LineLoader(text)
    loader.name = str(path)
    try:
        doc = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise MappingFileError(str(path), line, f"not valid YAML: {exc.problem}") from exc
    finally:
        loader.dispose()
    if not isinstance(doc, LineDict):
        raise MappingFileError(str(path), 1, "a mapping file is a YAML mapping (system:, source:, record:, case:)")
    for key in doc:
        if key not in TOP_KEYS:
            raise MappingFileError(str(path), doc.key_lines.get(key),
                                   f"unknown key {key!r} (allowed: {', '.join(sorted(TOP_KEYS))})")
    for key in REQUIRED_TOP:
        if key == "case" and "flowback" in doc:
            continue
        if key not in doc:
            raise MappingFileError(str(path), 1, f"missing required key {key!r}")
    _check_no_secrets(str(path), doc)
    try:
        doc = expand_env(doc)
    except KeyError as exc:
        raise MappingFileError(str(path), None, f"environment variable {exc.args[0]} is not set and has no default") from exc
    if "flowback" in doc:
        from tongban.flowback.mapping import FlowbackMapping

        return FlowbackMapping(doc, path)
    return Mapping(doc, path)
