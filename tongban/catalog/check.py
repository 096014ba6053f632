"""Checking 实施编码 against the unified item catalogue: per case (the pipeline quarantines at stage
"catalog"), per mapping file (every legacy-item → 实施编码 table), and what a catalogue change affects."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import func, select

from tongban.mapping import MappingFileError, load_mapping
from tongban.store import Store

from .catalogue import CatalogDiff, Catalogue
from .sync import current, sync

log = logging.getLogger("tongban.catalog")

UNKNOWN, RETIRED, WRONG_TYPE, UNREADABLE = "unknown", "retired", "wrong_type", "unreadable"


class CatalogError(Exception):
    """A 实施编码 the catalogue does not allow; `kind` is unknown, retired or wrong_type."""

    def __init__(self, kind: str, code: str, rule: str):
        super().__init__(f"item_code {code}: {rule}")
        self.kind, self.code, self.rule = kind, code, rule


def check_code(catalogue: Catalogue, code: str, expected_type: str | None = None) -> None:
    item = catalogue.get(code)
    if item is None:
        raise CatalogError(UNKNOWN, code, f"not in the unified item catalogue (version {catalogue.version})")
    if item.retired:
        successor = f", replaced by {item.replaced_by}" if item.replaced_by else ""
        raise CatalogError(RETIRED, code, f"{item.name} is retired in catalogue version {catalogue.version}{successor}")
    # 实施编码 characters 22–23 are the 事项类型 of its 基本编码; a table may also state the type it expects.
    for label, claimed in (("the code", code[21:23]), ("the mapping table", expected_type)):
        if claimed and item.item_type and claimed != item.item_type:
            raise CatalogError(WRONG_TYPE, code, f"事项类型 {claimed} in {label}, but {item.item_type} in catalogue "
                                                 f"version {catalogue.version} ({item.name})")


# --------------------------------------------------------------------------------- mapping files


@dataclass
class MappingProblem:
    mapping_file: str
    system: str | None
    kind: str
    rule: str
    table: str | None = None
    legacy_code: str | None = None
    code: str | None = None

    def __str__(self) -> str:
        where = f"{self.table}: {self.legacy_code} → {self.code}: " if self.table else ""
        return f"{Path(self.mapping_file).name}: {where}{self.rule}"


def item_codes(mapping) -> list[tuple[str | None, str | None, str, str | None]]:
    """(table, legacy code, 实施编码, 事项类型 the table states) of every item a mapping file can send."""
    spec = mapping.doc["case"].get("item_code")
    if not isinstance(spec, dict):
        return [(None, None, str(spec), None)] if spec else []
    if "const" in spec:
        return [(None, None, str(spec["const"]), None)]
    lookup = spec.get("lookup")
    if not isinstance(lookup, dict):
        return []
    rows = mapping.tables.get(lookup.get("table"), [])
    return [(lookup["table"], row.get(lookup["key"]), (row.get(lookup["value"]) or "").strip(),
             (row.get("item_type") or "").strip() or None) for row in rows]


def check_mapping(mapping, catalogue: Catalogue) -> list[MappingProblem]:
    problems = []
    for table, legacy, code, item_type in item_codes(mapping):
        try:
            check_code(catalogue, code, item_type)
        except CatalogError as exc:
            problems.append(MappingProblem(mapping.path_text, mapping.system, exc.kind, exc.rule, table, legacy, code))
    return problems


def mapping_files(mappings_dir: Path) -> list[Path]:
    return sorted(Path(mappings_dir).glob("*.yaml"))


def check_mapping_files(paths: Iterable[Path], catalogue: Catalogue) -> dict[str, list[MappingProblem]]:
    """Problems per mapping file (an empty list: the file's item table fits the catalogue)."""
    report: dict[str, list[MappingProblem]] = {}
    for path in paths:
        try:
            mapping = load_mapping(path)
        except MappingFileError as exc:
            report[str(path)] = [MappingProblem(str(path), None, UNREADABLE, str(exc))]
            continue
        report[str(path)] = check_mapping(mapping, catalogue)
    return report


# --------------------------------------------------------------------------------- the pipeline's check


class CatalogCheck:
    """The ingest's per-case check. Loads the current catalogue once per run (syncing it first if none was
    ever synced) and, before the first case, reports the mapping file's table problems in the log."""

    def __init__(self, mapping, *, store: Store, platform: Any):
        self.mapping, self.store, self.platform = mapping, store, platform
        self._loaded = False
        self.catalogue: Catalogue | None = None
        self.problems: list[MappingProblem] = []

    def _load(self) -> Catalogue | None:
        self._loaded = True
        catalogue = current(self.store)
        if catalogue is None:
            try:
                catalogue = sync(self.store, self.platform).catalogue
            except Exception as exc:  # noqa: BLE001 - a check we cannot run is said loudly, not fatal
                log.warning("%s: no unified item catalogue synced and the platform did not serve one (%s): "
                            "item codes are not checked in this run; run `tongban catalog sync`",
                            self.mapping.system, type(exc).__name__)
                return None
        self.problems = check_mapping(self.mapping, catalogue)
        for problem in self.problems:
            log.warning("catalogue check: %s", problem)
        self.catalogue = catalogue
        return catalogue

    def check(self, item_code: str) -> None:
        catalogue = self.catalogue if self._loaded else self._load()
        if catalogue is not None:
            check_code(catalogue, item_code)


# --------------------------------------------------------------------------------- affected by a change


def waiting_cases(store: Store, codes: Iterable[str]) -> dict[str, dict[str, int]]:
    """Per 实施编码: cases already numbered under it and not concluded, and cases quarantined for it."""
    from tongban.store.at_rest import reveal
    from tongban.store.tables import case_numbers, case_snapshots, quarantine

    result: dict[str, dict[str, int]] = {}
    with store.read() as conn:
        for code in codes:
            open_cases = 0
            for (snapshot,) in conn.execute(
                    select(case_snapshots.c.snapshot).select_from(case_numbers.join(
                        case_snapshots, (case_snapshots.c.system == case_numbers.c.system)
                        & (case_snapshots.c.source_key == case_numbers.c.source_key)))
                    .where(case_numbers.c.item_code == code)):
                if not (json.loads(reveal(snapshot)).get("conclusion") or {}).get("concluded_at"):
                    open_cases += 1
            quarantined = conn.execute(select(func.count()).select_from(quarantine).where(
                quarantine.c.stage == "catalog", quarantine.c.status == "open",
                quarantine.c.rule.contains(code))).scalar() or 0
            result[code] = {"open_cases": open_cases, "quarantined": quarantined}
    return result


def affected_mappings(changes: CatalogDiff, paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Mapping-table rows that send a code the new catalogue withdrew (retired, replaced or removed)."""
    withdrawn = set(changes.withdrawn)
    rows = []
    if not withdrawn:
        return rows
    for path in paths:
        try:
            mapping = load_mapping(path)
        except MappingFileError:
            continue
        for table, legacy, code, _type in item_codes(mapping):
            if code in withdrawn:
                change = "replaced" if code in changes.replaced else "removed" if code in changes.removed else "retired"
                rows.append({"mapping_file": str(path), "system": mapping.system, "table": table,
                             "legacy_code": legacy, "code": code, "change": change,
                             "replaced_by": changes.replaced.get(code)})
    return rows


def sync_and_report(*, store: Store | None = None, platform: Any = None, settings=None,
                    mappings_dir: Path | None = None) -> dict[str, Any]:
    """Sync the catalogue, then report what changed, which mapping files send a withdrawn item (with the
    number of waiting cases), and every mapping file's problems. The daily catalogue DAG's callable."""
    from tongban.platform.client import PlatformClient
    from tongban.settings import load
    from tongban.store import open_store

    settings = settings or load()
    store = store or open_store(settings.db_url)
    own_platform = platform is None
    platform = platform or PlatformClient(settings)
    try:
        result = sync(store, platform)
    finally:
        if own_platform:
            platform.close()
    paths = mapping_files(mappings_dir or settings.mappings_dir)
    affected = affected_mappings(result.diff, paths) if result.stored else []
    waiting = waiting_cases(store, sorted({row["code"] for row in affected}))
    for row in affected:
        row.update(waiting[row["code"]])
        log.warning("catalogue v%s %s %s (%s → %s%s): %d open cases, %d quarantined",
                    result.catalogue.version, row["change"], row["code"], Path(row["mapping_file"]).name,
                    row["legacy_code"], f", replaced by {row['replaced_by']}" if row["replaced_by"] else "",
                    row["open_cases"], row["quarantined"])
    problems = check_mapping_files(paths, result.catalogue)
    return {
        "version": result.catalogue.version,
        "previous_version": result.previous.version if result.previous else None,
        "stored": result.stored,
        "diff": result.diff.as_dict() if result.stored else None,
        "affected": affected,
        "mapping_problems": {path: [asdict(p) for p in found] for path, found in problems.items()},
    }
