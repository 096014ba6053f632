"""Paths into a record, compiled once into plain Python: JMESPath's meaning, without its interpreter per record.

A mapping's paths are JMESPath expressions, and almost all of them are plain field names (`ywh`, `"事项编码"`), dotted
names (`pj.myd`), alternatives (`"中文" || PINYIN`) or a field and a literal (`zzmc && '…'`). Those become closures
that do what JMESPath's tree interpreter does for the same tree — `value.get(name)` on an object, None on anything
else, JMESPath's falsiness (null, "", [], {}, false) for `||` and `&&` — and nothing more. Every other expression
(projections, filters, functions, indexes) is searched by jmespath itself, so the language and its errors are exactly
JMESPath's. `compile_path` raises JMESPathError for a bad expression, as `jmespath.compile` does.
"""
from __future__ import annotations

from typing import Any, Callable

import jmespath

Search = Callable[[Any], Any]


def _is_false(value: Any) -> bool:
    # JMESPath's own test (visitor.TreeInterpreter._is_false): equality, since 0 and 0.0 are true in JMESPath.
    return value == '' or value == [] or value == {} or value is None or value is False


def _field(name: str) -> Search:
    def search(value: Any) -> Any:
        try:
            return value.get(name)
        except AttributeError:  # not an object: JMESPath gives null
            return None
    return search


def _chain(names: list[str]) -> Search:
    def search(value: Any) -> Any:
        for name in names:
            try:
                value = value.get(name)
            except AttributeError:
                value = None
        return value
    return search


def _or(left: Search, right: Search) -> Search:
    def search(value: Any) -> Any:
        matched = left(value)
        return right(value) if _is_false(matched) else matched
    return search


def _and(left: Search, right: Search) -> Search:
    def search(value: Any) -> Any:
        matched = left(value)
        return matched if _is_false(matched) else right(value)
    return search


def _literal(constant: Any) -> Search:
    return lambda _value: constant


def _plain(node: dict) -> Search | None:
    """A closure for the trees that need no interpreter; None for the others."""
    kind = node["type"]
    if kind == "field":
        return _field(node["value"])
    if kind == "subexpression" and all(child["type"] == "field" for child in node["children"]):
        return _chain([child["value"] for child in node["children"]])
    if kind in ("or_expression", "and_expression"):
        left, right = (_plain(child) for child in node["children"])
        if left is None or right is None:
            return None
        return _or(left, right) if kind == "or_expression" else _and(left, right)
    if kind == "literal" and isinstance(node["value"], (str, int, float, bool, type(None))):
        return _literal(node["value"])  # a scalar: nothing the caller could change in place
    return None


class CompiledPath:
    """`search(value)` as jmespath's compiled expression offers it; `plain` says no interpreter is involved."""

    __slots__ = ("expression", "parsed", "search", "plain")

    def __init__(self, expression: str):
        compiled = jmespath.compile(expression)
        self.expression, self.parsed = expression, compiled.parsed
        fast = _plain(compiled.parsed)
        self.plain = fast is not None
        self.search: Search = fast if fast is not None else compiled.search

    def __repr__(self) -> str:
        return f"CompiledPath({self.expression!r}, plain={self.plain})"


def compile_path(expression: str) -> CompiledPath:
    return CompiledPath(str(expression))
