"""Checking a mapping file's `source:` section against the settings its adapter declares.

Every adapter class may carry `settings_model` (adapters/base.py): a pydantic model of its settings, the `source:`
section without its `adapter` key. This module validates the section against it and turns each pydantic error into a
`MappingFileError` naming the mapping file's line — the line of the misspelled key, of the wrongly typed value, or of
the mapping that lacks a required setting — with the setting's dotted name (`source.auth.url`) and the rule:

  unknown setting      a key the model does not have, with the closest allowed name (`did you mean 'page_param'?`)
  missing setting      a required setting is absent (with its description from the model)
  wrong value          anything else pydantic refuses (a type, a range, an enum, a validator's own message)
  unknown adapter      `adapter:` names no registered adapter (the registered ones are listed)
  adapter not loadable the adapter's module fails to import

What it refuses to know: any particular adapter. Its knowledge of settings is the model's JSON Schema; an adapter
without a model (a third party that has not declared one yet) is accepted with a warning. Values are never quoted in
messages: a value may have come from an environment variable that holds a secret.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from .errors import MappingFileError
from .loader import LineDict, line_of
from .schema_walk import allowed_names, description_at


@dataclass
class SourceCheck:
    adapter: str
    model: Any = None
    problems: list[MappingFileError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def settings_model_of(kind: str) -> tuple[Any, Any]:
    """(adapter class, its settings_model or None); LookupError for an unregistered kind, ImportError when broken."""
    from adapters.base import adapter_class

    cls = adapter_class(kind)
    return cls, getattr(cls, "settings_model", None)


def check_source(mapping) -> SourceCheck:
    """Validate `mapping.source` (with the lines of `mapping.source_node`) against its adapter's settings model."""
    kind = str(mapping.source.get("adapter"))
    report = SourceCheck(kind)
    node = mapping.source_node
    try:
        cls, model = settings_model_of(kind)
    except LookupError as exc:
        report.problems.append(MappingFileError(mapping.path_text, line_of(node, "adapter"), f"source.adapter: {exc}"))
        return report
    except Exception as exc:  # a third-party module that fails to import: name it, no traceback
        report.problems.append(MappingFileError(mapping.path_text, line_of(node, "adapter"),
                                                f"source.adapter: adapter {kind!r} cannot be loaded "
                                                f"({type(exc).__name__}: {exc})"))
        return report
    if model is None:
        report.warnings.append(f"adapter {kind!r} ({cls.__module__}.{cls.__name__}) declares no settings model: its "
                               f"settings are not checked (see docs/adapters.md, settings_model)")
        return report
    report.model = model
    settings = {k: v for k, v in mapping.source.items() if k != "adapter"}
    report.problems = validate_settings(model, settings, node, mapping.path_text,
                                        line=mapping.doc.key_lines.get("source"))
    return report


def validate_settings(model, settings: dict, node: Any, path_text: str, prefix: str = "source",
                      line: int | None = None) -> list[MappingFileError]:
    """Every problem pydantic finds in `settings`, each with the line of `node` (a LineDict tree) it concerns;
    `line` is the line of the key holding `node` (where a missing top-level setting is reported)."""
    from pydantic import ValidationError

    try:
        model.model_validate(settings)
    except ValidationError as exc:
        try:
            schema = model.model_json_schema()
        except Exception:  # a model pydantic cannot describe: errors without suggestions, still with lines
            schema = {}
        problems, seen = [], set()
        for error in exc.errors(include_input=False, include_url=False):
            problem = _problem(error, schema, node, path_text, prefix, line)
            if (problem.line, problem.rule) not in seen:
                seen.add((problem.line, problem.rule))
                problems.append(problem)
        return problems
    except Exception as exc:  # a validator of a third-party model that raises something else: name it, no traceback
        return [MappingFileError(path_text, line, f"{prefix}: the adapter's settings model failed "
                                                  f"({type(exc).__name__}: {exc})")]
    return []


def _walk(node: Any, loc: tuple, line: int | None) -> tuple[list, int | None, Any]:
    """The loc elements that exist in the document (tags and class names skipped), the line of the last key reached
    (a missing setting is reported on the line of the key that should hold it), the last node."""
    walked: list = []
    for elem in loc:
        if isinstance(node, dict) and elem in node:
            line, node = line_of(node, elem) or line, node[elem]
            walked.append(elem)
        elif isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
            line, node = line_of(node, elem) or line, node[elem]
            walked.append(elem)
    return walked, line, node


def _dotted(prefix: str, parts: list) -> str:
    text = prefix
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _problem(error: dict, schema: dict, node: Any, path_text: str, prefix: str, start: int | None) -> MappingFileError:
    loc = tuple(error.get("loc") or ())
    kind = error.get("type", "")
    if kind == "extra_forbidden" and loc:
        walked, line, _ = _walk(node, loc, start)
        name = loc[-1]
        allowed = allowed_names(schema, loc[:-1])
        close = difflib.get_close_matches(str(name), allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else (f" (allowed here: {', '.join(allowed)})" if allowed else "")
        return MappingFileError(path_text, line, f"{_dotted(prefix, walked)}: unknown setting{hint}")
    if kind == "missing" and loc:
        walked, line, _ = _walk(node, loc[:-1], start)
        where = _dotted(prefix, [*walked, loc[-1]])
        description = description_at(schema, loc)
        return MappingFileError(path_text, line, f"{where}: missing required setting"
                                                 f"{f' ({description})' if description else ''}")
    walked, line, _ = _walk(node, loc, start)
    return MappingFileError(path_text, line, f"{_dotted(prefix, walked)}: {error.get('msg', 'invalid value')}")


__all__ = ["SourceCheck", "check_source", "settings_model_of", "validate_settings", "LineDict"]
