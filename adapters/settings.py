"""Validating an adapter's `source:` settings against its declared model (`Adapter.settings_model`).

The mapping file's `source:` section holds `adapter: <kind>` plus the adapter's own settings; the model
describes the latter only, so `adapter` is dropped before validation. `setting_errors` names each problem by
its dotted setting path as written in the file (pydantic's union tags such as `login` in
`auth.login.token_path` are removed), so that `tongban mapping check` can point at the file's line and an
adapter can raise a `SourceError` naming the setting.
"""
from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from adapters.base import SourceError

M = TypeVar("M", bound=BaseModel)


def _written_path(loc: tuple, section: Any) -> list[str]:
    """The parts of a pydantic error location that are keys (or indexes) of the section as written."""
    parts, node = [], section
    for part in loc:
        if isinstance(node, dict) and part in node:
            parts.append(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            parts.append(str(part))
            node = node[part]
        elif isinstance(node, dict) and not isinstance(part, int) and part not in node:
            # A missing setting, or a union's tag: keep missing field names, drop tags (they are not keys).
            if part != (node.get("type") or node.get("style")):
                parts.append(str(part))
    return parts


def setting_errors(exc: ValidationError, section: dict[str, Any]) -> list[tuple[str, str]]:
    """(dotted setting path, message) for every problem pydantic found."""
    errors = []
    for error in exc.errors(include_url=False):
        path = ".".join(_written_path(tuple(error["loc"]), section)) or "(the section)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting"
        errors.append((path, message))
    return errors


def validate_settings(model: type[M], system: str, settings: dict[str, Any]) -> M:
    """The settings as the model, or a SourceError naming every wrong setting."""
    section = {key: value for key, value in (settings or {}).items() if key != "adapter"}
    try:
        return model.model_validate(section)
    except ValidationError as exc:
        problems = "; ".join(f"{path}: {message}" for path, message in setting_errors(exc, section))
        raise SourceError(system, f"source settings: {problems}") from None


class Configured:
    """For an adapter or a submitter that declares its `settings_model`: `config` is its settings validated against
    that model, at construction, so that a configuration mistake (the operator's to fix) is a SourceError naming every
    wrong setting before anything runs. Listed before the base class: `class SoapAdapter(Configured, Adapter)`."""

    settings_model: ClassVar[type[BaseModel]]
    config: Any

    def __init__(self, system: str, settings: dict[str, Any], **seams: Any):
        super().__init__(system, settings, **seams)  # Adapter or Submitter
        self.config = validate_settings(self.settings_model, system, settings)
