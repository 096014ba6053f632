"""Write the next migration: `python -m tongban.store.migrations.revision -m "what changed"`.

The equivalent of `alembic revision --autogenerate` through this package's env.py, with no database to point at:
a scratch SQLite database is upgraded to the current head, compared with the model (every module in
`tongban.store.schema.TABLE_MODULES`), and the difference is written to `versions/NNNN_<message>.py` with the next
number. Read the file before committing it (autogenerate does not see renames, and names server defaults only
roughly), then run the migration test (tests/integration/test_migrations.py) on both back ends.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tongban.store import schema


def next_revision_id() -> str:
    numbers = [int(path.name[:4]) for path in (schema.MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")]
    return f"{max(numbers, default=0) + 1:04d}"


def write_revision(message: str, *, empty: bool = False) -> Path:
    from alembic import command

    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/scratch.db"
        schema.upgrade(url)
        config = schema.alembic_config(url)
        script = command.revision(config, message=message, autogenerate=not empty, rev_id=next_revision_id())
    return Path(script.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--message", required=True, help="what the revision changes (its file name too)")
    parser.add_argument("--empty", action="store_true", help="an empty revision to fill in by hand (data moves)")
    args = parser.parse_args()
    print(write_revision(args.message, empty=args.empty))


if __name__ == "__main__":
    main()
