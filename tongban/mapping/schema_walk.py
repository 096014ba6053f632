"""Walking a settings model's JSON Schema (pydantic's `model_json_schema()`), for two readers that must not know any
particular adapter: the error messages of `mapping check` (which settings are allowed where a key was misspelled) and
the reference in docs/adapters.md (every setting, its type, default and description).

It understands what pydantic emits: `$ref` into `$defs`, `anyOf`/`oneOf`/`allOf`, discriminated unions (a `const`
property per variant), `items` of lists and `additionalProperties` of maps. Anything else is shown as "any".
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator


def _deref(node: dict, defs: dict) -> dict:
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 32:
        node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
        seen += 1
    return node if isinstance(node, dict) else {}


def alternatives(node: dict, defs: dict) -> list[dict]:
    """The concrete schemas a node may be (unions flattened, refs followed, `null` dropped)."""
    node = _deref(node, defs)
    out: list[dict] = []
    for key in ("anyOf", "oneOf"):
        if key in node:
            for alt in node[key]:
                out.extend(alternatives(alt, defs))
            return out
    if "allOf" in node and len(node["allOf"]) == 1:
        return alternatives(node["allOf"][0], defs)
    return [] if node.get("type") == "null" else [node]


def variant_label(node: dict) -> str | None:
    """`type: login` for a variant of a discriminated union (the property whose value is a constant)."""
    for name, prop in (node.get("properties") or {}).items():
        if "const" in prop:
            return f"{name}: {prop['const']}"
        if isinstance(prop.get("enum"), list) and len(prop["enum"]) == 1:
            return f"{name}: {prop['enum'][0]}"
    return None


def _matches_tag(node: dict, elem: str) -> bool:
    if node.get("title") == elem:
        return True
    return any(prop.get("const") == elem or prop.get("enum") == [elem] for prop in (node.get("properties") or {}).values())


def objects_at(schema: dict, loc: tuple) -> list[dict]:
    """The object schemas that may sit at `loc` (a pydantic error location: tags and class names narrow a union)."""
    defs = schema.get("$defs", {})
    current = alternatives(schema, defs)
    for elem in loc:
        following: list[dict] = []
        for node in current:
            props = node.get("properties") or {}
            if isinstance(elem, int) and "items" in node:
                following.extend(alternatives(node["items"], defs))
            elif isinstance(elem, str) and elem in props:
                following.extend(alternatives(props[elem], defs))
            elif isinstance(elem, str) and isinstance(node.get("additionalProperties"), dict):
                following.extend(alternatives(node["additionalProperties"], defs))
        if following:
            current = following
            continue
        tagged = [node for node in current if isinstance(elem, str) and _matches_tag(node, elem)]
        if tagged:
            current = tagged  # a discriminator tag or a class name in the location: narrow, do not descend
    return current


def allowed_names(schema: dict, loc: tuple) -> list[str]:
    """The property names allowed in the object at `loc`."""
    names: list[str] = []
    for node in objects_at(schema, loc):
        names.extend(name for name in (node.get("properties") or {}) if name not in names)
    return names


def description_at(schema: dict, loc: tuple) -> str:
    """The model's description of the setting at `loc` (the first variant that has one)."""
    if not loc:
        return ""
    defs = schema.get("$defs", {})
    *parents, name = loc
    for node in objects_at(schema, tuple(parents)):
        prop = (node.get("properties") or {}).get(name)
        if prop:
            text = prop.get("description") or next((a.get("description") for a in alternatives(prop, defs)
                                                    if a.get("description")), "")
            return " ".join(str(text).split())
    return ""


def describe_type(node: dict, defs: dict) -> str:
    alts = alternatives(node, defs)
    if not alts:
        return "null"
    parts = []
    for alt in alts:
        if "const" in alt:
            parts.append(json.dumps(alt["const"], ensure_ascii=False))
        elif "enum" in alt:
            parts.append(" | ".join(json.dumps(v, ensure_ascii=False) for v in alt["enum"]))
        elif alt.get("type") == "array":
            parts.append(f"list of {describe_type(alt.get('items', {}), defs)}")
        elif alt.get("type") == "object" and not alt.get("properties"):
            extra = alt.get("additionalProperties")
            parts.append(f"map of {describe_type(extra, defs)}" if isinstance(extra, dict) and extra else "mapping")
        elif alt.get("properties"):
            parts.append(variant_label(alt) and f"mapping ({variant_label(alt)})" or "mapping")
        elif isinstance(alt.get("type"), list):
            parts.append(" or ".join(alt["type"]))
        else:
            parts.append(str(alt.get("type", "any")))
    seen: list[str] = []
    for part in parts:
        if part not in seen:
            seen.append(part)
    return " or ".join(seen)


@dataclass
class SettingRow:
    name: str          # dotted: auth.url
    variant: str | None  # `type: login` when the setting belongs to one variant of a union
    type: str
    required: bool
    default: Any
    has_default: bool
    description: str


def setting_rows(schema: dict) -> Iterator[SettingRow]:
    """Every setting of a model, nested ones dotted, in declaration order."""
    defs = schema.get("$defs", {})
    yield from _rows(_deref(schema, defs), defs, "", None, 0)


def _rows(node: dict, defs: dict, prefix: str, variant: str | None, depth: int) -> Iterator[SettingRow]:
    if depth > 8:
        return
    required = set(node.get("required") or [])
    for name, prop in (node.get("properties") or {}).items():
        dotted = f"{prefix}{name}"
        target = _deref(prop, defs)
        description = prop.get("description") or target.get("description") or ""
        yield SettingRow(dotted, variant, describe_type(prop, defs), name in required, prop.get("default"),
                         "default" in prop, " ".join(str(description).split()))
        objects = [alt for alt in alternatives(prop, defs) if alt.get("properties")]
        for alt in objects:
            label = variant_label(alt) if len(objects) > 1 else variant
            yield from _rows(alt, defs, f"{dotted}.", label, depth + 1)
        for alt in alternatives(prop, defs):
            items = alt.get("items") if alt.get("type") == "array" else None
            if isinstance(items, dict):
                for item in alternatives(items, defs):
                    if item.get("properties"):
                        yield from _rows(item, defs, f"{dotted}[].", variant, depth + 1)
