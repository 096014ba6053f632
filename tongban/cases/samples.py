"""A valid example case (snapshot and its stages), for tests, docs and sandbox demos.

The codes fit the formats (reference/standards.md) but belong to no real body or person.
"""
from __future__ import annotations

import copy

SAMPLE_ITEM_CODE = "11440100696927671X3442111817001"  # 18 credit code + 行使层级 3 + 12 基本编码
SAMPLE_UNIT_CODE = "11500000MB1541891M"  # check digit valid (GB 32100-2015)

_FULL = {
    "source_system": "cq-samr-rest",
    "source_key": "SB2024000123",
    "item_code": SAMPLE_ITEM_CODE,
    "local_item_code": "SX-0012",
    "region": "500103",
    "application": {
        "case_type": "2",
        "applicant_name": "张三",
        "applicant_kind": "1",
        "applicant_id_type": "111",
        "applicant_id_number": "11010519491231002X",
        "applicant_phone": "13800138000",
        "agent_name": None,
        "agent_id_type": None,
        "agent_id_number": None,
        "channel": "1",
        "applied_at": "20240301T093000",
        "materials": [{"name": "营业执照", "count": 1}],
    },
    "acceptance": {
        "accepting_unit": "重庆市市场监督管理局",
        "accepting_unit_code": SAMPLE_UNIT_CODE,
        "accepted_by": "李四",
        "accepted_at": "20240301T100000",
        "promised_at": "20240310T170000",
    },
    "steps": [
        {"name": "审查", "handler": "王五", "opinion": "同意", "started_at": "20240301T100000",
         "ended_at": "20240302T110000", "status": "2", "action": "通过"},
        {"name": "决定", "handler": "赵六", "opinion": "准予许可", "started_at": "20240304T090000",
         "ended_at": "20240304T100000", "status": "2", "action": "通过"},
    ],
    "suspensions": [{"reason": "专家评审", "suspended_at": "20240302T120000", "resumed_at": "20240303T170000"}],
    "conclusion": {
        "concluded_at": "20240304T110000", "result": "1", "result_note": None,
        "licence_name": "食品经营许可证", "licence_number": "JY15001030012345",
        "valid_from": "20240304", "valid_to": "20290303", "issuing_body": "重庆市市场监督管理局",
        "fees": 0.0, "delivery": "1",
    },
    "evaluation": {"satisfaction": 1, "comment": "办事快", "evaluated_at": "20240305T090000"},
}


def sample_snapshot(stage: str = "evaluated", **overrides) -> dict:
    """The example case at one stage: applied, accepted, handling, suspended, resumed, concluded, evaluated."""
    snapshot = copy.deepcopy(_FULL)
    if stage in ("applied", "accepted", "handling", "suspended", "resumed"):
        snapshot["conclusion"] = None
    if stage in ("applied", "accepted", "handling", "suspended", "resumed", "concluded"):
        snapshot["evaluation"] = None
    if stage in ("applied",):
        snapshot["acceptance"] = None
    if stage in ("applied", "accepted"):
        snapshot["steps"], snapshot["suspensions"] = [], []
    if stage in ("handling", "suspended", "resumed"):
        snapshot["steps"] = snapshot["steps"][:1]
    if stage == "handling":
        snapshot["suspensions"] = []
    if stage == "suspended":
        snapshot["suspensions"][0]["resumed_at"] = None
    snapshot.update(overrides)
    return snapshot


def sample_event(case_number: str, event: str, sequence: int, data: dict, occurred_at: str, snapshot: dict | None = None) -> dict:
    """Wrap event data into a full case event dict (the envelope fields from the snapshot)."""
    snapshot = snapshot or _FULL
    return {
        "case_number": case_number,
        "event": event,
        "sequence": sequence,
        "source_system": snapshot["source_system"],
        "source_key": snapshot["source_key"],
        "item_code": snapshot["item_code"],
        "local_item_code": snapshot["local_item_code"],
        "region": snapshot["region"],
        "occurred_at": occurred_at,
        "data": data,
    }
