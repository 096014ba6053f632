"""Where a bundle member goes: the `submit:` section of its department's mapping file, checked with its lines.

The same file's `source:`/`record:`/`case:` bring the member's case back through the ordinary ingest; `submit:`
names a submitter (adapters/submit.py: `rest`, `files`, or a third party's) and its settings, validated against the
submitter's declared model so that a misspelled key is an error on its line, as for `source:`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tongban.mapping.errors import MappingFileError


@dataclass
class SubmitTarget:
    system: str
    department: str
    kind: str
    settings: dict[str, Any]
    path: Path

    def submitter(self, **seams: Any):
        from adapters.submit import submitter_class

        return submitter_class(self.kind)(self.system, dict(self.settings), **seams)


def load_submit_target(path: str | Path) -> SubmitTarget:
    """The department system's submit settings, or a MappingFileError naming the file and the line."""
    from adapters.submit import submitter_class
    from tongban.mapping.loader import line_of, read_mapping_document
    from tongban.mapping.source_check import validate_settings

    path = Path(path)
    doc, _ = read_mapping_document(path)
    section = doc.get("submit")
    if not isinstance(section, dict):
        raise MappingFileError(str(path), doc.line or 1, "this department mapping has no `submit:` section "
                                                         "(how bundle members are submitted to it)")
    kind = section.get("adapter")
    if not isinstance(kind, str):
        raise MappingFileError(str(path), line_of(doc, "submit"), "submit.adapter: missing (rest, files …)")
    try:
        model = submitter_class(kind).settings_model
    except LookupError as exc:
        raise MappingFileError(str(path), line_of(section, "adapter"), f"submit.adapter: {exc}") from None
    settings = {k: v for k, v in section.items() if k != "adapter"}
    if model is not None:
        problems = validate_settings(model, settings, section, str(path), prefix="submit",
                                     line=line_of(doc, "submit"))
        if problems:
            raise MappingFileError(str(path), problems[0].line, "; ".join(p.rule for p in problems))
    return SubmitTarget(str(doc["system"]), str(doc.get("department", "")), kind, settings, path)
