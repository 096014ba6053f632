"""Errors that name what a department needs to fix: the file and line, the record, the field, the rule."""
from __future__ import annotations


class MappingFileError(Exception):
    """The mapping file itself is wrong (bad YAML, unknown key, missing section, unreadable table)."""

    def __init__(self, path: str, line: int | None, rule: str):
        self.path, self.line, self.rule = path, line, rule
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {rule}")


class MappingError(Exception):
    """One legacy record could not be turned into a valid case."""

    def __init__(self, record_key: str | None, field: str, rule: str, line: int | None = None):
        self.record_key, self.field, self.rule, self.line = record_key, field, rule, line
        where = f" (mapping line {line})" if line else ""
        super().__init__(f"record {record_key or '?'}: field {field}: {rule}{where}")
