"""Doubles and helpers shared by several test files (imported as `tests.support`)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from adapters.base import Adapter, RawRecord

REPO = Path(__file__).resolve().parents[1]
TONGBAN = str(Path(sys.executable).with_name("tongban"))  # the venv's console script, as a newcomer runs it


def run_tongban(args, env, check: bool = True) -> subprocess.CompletedProcess:
    """`tongban *args` in the repository with `env`; with `check`, a non-zero exit fails naming the output."""
    result = subprocess.run([TONGBAN, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"tongban {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


class ListAdapter(Adapter):
    """A legacy system that is a list of records: what a test wants ingest to see, with positions as references."""

    kind = "records"

    def __init__(self, records, system: str = "cq-samr-rest"):
        super().__init__(system, {})
        self.records = records

    def fetch(self, watermark):
        for i, record in enumerate(self.records):
            yield RawRecord(record, f"#{i + 1}")


def mapping_variant(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    """A copy of a mapping file (with its code tables beside it) where `old` is replaced by `new`."""
    text = source.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {source.name}"
    if not (tmp_path / "tables").exists():
        shutil.copytree(source.parent / "tables", tmp_path / "tables")
    path = tmp_path / source.name
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    """The 1-based number of the first line of `path` holding `needle` (errors must name it)."""
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)
