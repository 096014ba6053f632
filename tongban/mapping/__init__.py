"""Mapping files: one YAML file per legacy system declares where each case field comes from.

Public API (stable for the pipeline, the DAG factory and flowback sources): `load_mapping(path) -> Mapping`,
`Mapping.map_record(record, notes=None)`, `read_mapping_document(path, top_keys=…, required=…)` for other files of the
same language, `check_source(mapping)` / `validate_settings(model, settings, node, path)` for declared adapter settings,
and the two errors (`MappingFileError`: the file is wrong, with its line; `MappingError`: one record is wrong).
"""
from .errors import MappingError, MappingFileError  # noqa: F401
from .loader import load_mapping, read_mapping_document  # noqa: F401
from .engine import Mapping  # noqa: F401
from .source_check import check_source, validate_settings  # noqa: F401
