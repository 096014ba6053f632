"""The platform's bundle endpoints (sandbox/platform_bundles.py describes them), through the one platform client:
signed, with its quick retry and its failure types (PlatformTransient, PlatformRejected)."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tongban.bus.envelope import canonical_json

APPLICATIONS_PATH = "/api/v1/bundle-applications"


def fetch_applications(platform, after: int) -> tuple[list[dict[str, Any]], int]:
    """The bundle applications after sequence `after`, and the last sequence seen."""
    body = platform.get(f"{APPLICATIONS_PATH}?after={int(after)}")
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        from tongban.platform.client import PlatformRejected

        raise PlatformRejected(200, f"{APPLICATIONS_PATH} answered without an items list")
    return items, int(body.get("last") or after)


def push_status(platform, application_id: str, status: dict[str, Any], idempotency_key: str) -> dict:
    """The bundle's own status (受理 / 办结) to the platform; the key makes a retry harmless."""
    path = f"{APPLICATIONS_PATH}/{quote(application_id, safe='')}/status"
    response = platform.send("POST", path, content=canonical_json(status), idempotency_key=idempotency_key)
    return response.json()
