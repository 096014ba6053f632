"""The unified item catalogue (统一事项标准): one catalogue of 实施编码, synced from the platform with its
version; mapping tables and cases are checked against it.

- `sync(store, platform, version=None) -> SyncResult`, `current(store)`, `get_version(store, n)`, `versions(store)`
- `diff(old, new) -> CatalogDiff`; `check_code(catalogue, code)` raises `CatalogError` (unknown, retired,
  wrong_type); `check_mapping(mapping, catalogue)`, `check_mapping_files(paths, catalogue)`
- `CatalogCheck(mapping, store=, platform=).check(item_code)` — the pipeline's per-case check
- `sync_and_report(...)` — the daily DAG's callable; `affected_mappings`, `waiting_cases`
"""
from .catalogue import CatalogDiff, CatalogItem, Catalogue, diff
from .check import (
    CatalogCheck, CatalogError, MappingProblem, affected_mappings, check_code, check_mapping, check_mapping_files,
    item_codes, mapping_files, sync_and_report, waiting_cases,
)
from .sync import SyncResult, current, get_version, sync, versions

__all__ = [
    "CatalogCheck", "CatalogDiff", "CatalogError", "CatalogItem", "Catalogue", "MappingProblem", "SyncResult",
    "affected_mappings", "check_code", "check_mapping", "check_mapping_files", "current", "diff", "get_version",
    "item_codes", "mapping_files", "sync", "sync_and_report", "versions", "waiting_cases",
]
