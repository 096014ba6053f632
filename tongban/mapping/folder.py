"""The systems a mapping folder declares, read cheaply (the top level of each file, no validation): what the status,
watermark and maintenance commands and the console's indicators list."""
from __future__ import annotations

from pathlib import Path


def declared_headers(mappings_dir: Path) -> dict[str, tuple[str, dict]]:
    """system → (mapping file, its parsed top level), for every mapping file in the folder that names its system
    (broken files skipped: `tongban mapping check` is where they are reported)."""
    import yaml

    found: dict[str, tuple[str, dict]] = {}
    for path in sorted(Path(mappings_dir).glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("system"), str):
            found.setdefault(doc["system"], (str(path), doc))
    return found


def declared_systems(mappings_dir: Path) -> dict[str, str]:
    """system → mapping file (see declared_headers)."""
    return {system: path for system, (path, _) in declared_headers(mappings_dir).items()}
