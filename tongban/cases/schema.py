"""The published JSON Schema of a case event, and validation against it.

The schema is generated from the pydantic models (tongban.cases.models) and committed as
`case_event.schema.json` beside this module; tongban and the mock platform both validate against
that file, so the two sides cannot drift apart. Regenerate after changing a model:

    python -m tongban.cases.schema > tongban/cases/case_event.schema.json

(a test fails while the committed file differs from the generated one).
"""
from __future__ import annotations

import json
import sys
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from pydantic.json_schema import models_json_schema

from tongban.cases.models import DATA_MODELS, DATE_FORMAT, TIMESTAMP_FORMAT, CaseEvent

SCHEMA_PATH = Path(__file__).with_name("case_event.schema.json")
SCHEMA_ID = "urn:tongban:schema:case-event:1"


def case_event_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one case event, `data` constrained by `event` through if/then."""
    models = [CaseEvent, *DATA_MODELS.values()]
    _, top = models_json_schema([(model, "validation") for model in models], ref_template="#/$defs/{model}")
    defs = top["$defs"]
    schema = defs.pop("CaseEvent")
    # if/then rather than oneOf: a failing `then` reports the error at its real path (data.applied_at),
    # where a oneOf would only say "not valid under any of the given schemas".
    schema["allOf"] = [
        {
            "if": {"properties": {"event": {"const": event_type}}, "required": ["event"]},
            "then": {"properties": {"data": {"$ref": f"#/$defs/{model.__name__}"}}},
        }
        for event_type, model in DATA_MODELS.items()
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "$defs": dict(sorted(defs.items())),
    }


def render_schema() -> str:
    """The exact text of the committed schema file."""
    return json.dumps(case_event_schema(), ensure_ascii=False, indent=2) + "\n"


def _format_checker() -> FormatChecker:
    checker = FormatChecker()

    @checker.checks(TIMESTAMP_FORMAT, raises=ValueError)
    def _timestamp(value: object) -> bool:
        if isinstance(value, str):  # non-strings are the `type` keyword's business
            datetime.strptime(value, "%Y%m%dT%H%M%S")
        return True

    @checker.checks(DATE_FORMAT, raises=ValueError)
    def _date(value: object) -> bool:
        if isinstance(value, str):
            datetime.strptime(value, "%Y%m%d")
        return True

    return checker


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=_format_checker())


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<event>"


def _message(error: Any) -> str:
    if error.validator == "format":
        shape = "YYYYMMDDThhmmss" if error.validator_value == TIMESTAMP_FORMAT else "YYYYMMDD"
        return f"{error.instance!r} is not an existing date ({shape})"
    if error.validator == "additionalProperties":
        return f"{error.message} (unknown field)"
    return error.message


def validate_event(event: Any) -> list[str]:
    """Validate a case event dict against the committed schema: `path: message` lines, empty when valid."""
    errors = sorted(_validator().iter_errors(event), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{_path(error.absolute_path)}: {_message(error)}" for error in errors]


def main() -> None:
    sys.stdout.write(render_schema())


if __name__ == "__main__":
    main()
