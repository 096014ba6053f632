"""One Airflow pool per legacy system (`legacy__<system>`), sized by its mapping file's `concurrency:`, so that a
fragile system never sees more parallel calls from tongban than it can bear, however many workers run.

    python -m tongban.scheduling.pools FILE     # write the pools as `airflow pools import FILE` reads them

scripts/airflow-env.sh (airflow_prepare) runs both at every start, so a changed `concurrency:` takes effect then.
Broken mapping files are left out (their DAGs are too; tongban_mapping_errors.py reports them).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tongban.scheduling.ingest_plans import IngestPlan, discover


def pools_for(plans: list[IngestPlan]) -> dict[str, dict]:
    return {plan.pool: {"slots": plan.concurrency, "include_deferred": False,
                        "description": f"calls to {plan.system} ({plan.department or 'legacy system'}): "
                                       f"concurrency {plan.concurrency} from {plan.path.name}"}
            for plan in plans}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tongban.scheduling.pools FILE", file=sys.stderr)
        return 2
    plans, _errors = discover()
    pools = pools_for(plans)
    Path(argv[0]).write_text(json.dumps(pools, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"{len(pools)} pools: " + ", ".join(f"{name}={p['slots']}" for name, p in pools.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
