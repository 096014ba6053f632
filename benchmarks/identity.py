"""Identity resolutions per second — warm cache, cold cache — against the bare store lookup, in one run.

    .venv/bin/python benchmarks/identity.py            # 2,000 applicants
    .venv/bin/python benchmarks/identity.py --n 500

- bare:  one SELECT of identity_users by keyed hash (what a cache hit cannot beat)
- warm:  a fresh IdentityResolver (a new ingest run) over applicants already in the store: validation,
         HMAC, kind check, one SELECT each; no platform call (asserted)
- memo:  the same resolver again (a case seen twice in one run)
- cold:  an empty store: every applicant is one signed HTTP call to the mock unified user service + a write
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select  # noqa: E402

from sandbox.platform import create_app  # noqa: E402
from sandbox.runner import Server  # noqa: E402
from tongban.codes import make_id_number  # noqa: E402
from tongban.identity import IdentityResolver, normalise_user, pii_hash  # noqa: E402
from tongban.identity.tables import identity_users  # noqa: E402
from tongban.platform.client import PlatformClient  # noqa: E402
from tongban.settings import Settings  # noqa: E402
from tongban.store import Store  # noqa: E402
from tongban.store.schema import migrated  # noqa: E402


def applicants(n: int) -> list:
    start = date(1960, 1, 1)
    return [normalise_user("bench", {"id_type": "111", "kind": "1",
                                     "id_number": make_id_number("500103", start + timedelta(days=i // 400), i % 400, "M")})
            for i in range(n)]


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    users = applicants(args.n)
    server = Server(create_app(None), name="platform").start()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp), platform_url=server.url, pii_key="bench-key")
        store = Store(migrated(f"sqlite:///{tmp}/bench.db"))
        platform = PlatformClient(settings)
        try:
            cold = IdentityResolver(store=store, platform=platform, settings=settings)
            t0 = time.perf_counter()
            for user in users:
                cold.resolve_user(user)
            cold_s = time.perf_counter() - t0

            warm = IdentityResolver(store=store, platform=platform, settings=settings)
            t0 = time.perf_counter()
            for user in users:
                warm.resolve_user(user)
            warm_s = time.perf_counter() - t0
            assert warm.platform_calls == 0, "a warm cache must not call the platform"

            t0 = time.perf_counter()
            for user in users:
                warm.resolve_user(user)
            memo_s = time.perf_counter() - t0

            hashes = [pii_hash(u.id_number, settings.pii_key) for u in users]
            t0 = time.perf_counter()
            for digest in hashes:
                with store.read() as conn:
                    conn.execute(select(identity_users.c.status, identity_users.c.user_id)
                                 .where(identity_users.c.pii_hash == digest)).first()
            bare_s = time.perf_counter() - t0
        finally:
            platform.close()
            store.dispose()
            server.stop()
    bare = rate(args.n, bare_s)
    print(f"{args.n:,} applicants, SQLite store, mock unified user service on 127.0.0.1")
    for name, seconds in (("bare store lookup", bare_s), ("warm cache (new run)", warm_s),
                          ("memo (same run)", memo_s), ("cold cache (platform)", cold_s)):
        r = rate(args.n, seconds)
        print(f"  {name:<22} {r:>10,.0f} resolutions/s   ratio to bare {r / bare:5.2f}")


if __name__ == "__main__":
    main()
