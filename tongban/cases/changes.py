"""Change detection: which case events does a new snapshot of a legacy case add to the previous one?

Pure functions over the snapshots of the shared contract (dicts); no I/O. The caller keeps the last
snapshot it delivered for each case and asks `events_between(previous, current)` at every poll.

What becomes an event
- `application` — only when there is no previous snapshot (the first time the case is seen).
- `acceptance`, `conclusion` (result "1") / `return` (result "2"), `evaluation` — when they appear.
- `step` — each new step, with its position as `data["index"]` (0-based in the snapshot's steps). A step
  already sent that later changed (ended_at set, opinion written, status 待办 → 已办 …) is sent again as a
  `step` event carrying the same index, so the platform can tell an update from a new step.
- `suspension` — each new suspension; `resumption` — when a suspension's resumed_at appears.

Order within one poll: by time (occurred_at), ties broken by the natural lifecycle order —
application, acceptance, resumption (the clock restarts before the next step), step, suspension,
resumption of a suspension that ended the instant it began (it must follow its own suspension),
conclusion / return, evaluation. A new step occurs at its started_at; a re-sent step at its ended_at
(or started_at while it has none).

The legacy system going backwards
Nothing is invented and nothing is silently dropped: if `current` lacks something `previous` had (a
field that was set is now empty, a step or suspension disappeared) `ChangeError` names the field. The
same holds for a change to something already sent that the platform has no correction event for (the
application, the acceptance, the conclusion, the evaluation, a step's name or start, a suspension):
`ChangeError` names it, the caller quarantines the case with that reason, and the previous snapshot stays
the reference until someone resolves it.

Jumps
A rarely polled system may go straight from "applied" to "concluded" between two polls. We send what the
legacy system knows, in time order: the application (if not yet sent), the acceptance if the snapshot has
it, the steps and suspensions it has, then the conclusion. Nothing is invented: a conclusion without
acceptance data is sent as it is, and the state machine (tongban's and the platform's, the same rules)
rejects it as "conclusion before acceptance", which quarantines it with that rule.
"""
from __future__ import annotations

import copy
from typing import Any

EventTuple = tuple[str, dict, str]  # (event_type, data, occurred_at)

# Tie-break ranks for events at the same instant (see the module docstring).
_RANK = {
    "application": 0,
    "acceptance": 1,
    "resumption": 2,
    "step": 3,
    "suspension": 4,
    "instant_resumption": 5,
    "conclusion": 6,
    "return": 6,
    "evaluation": 7,
}
_IDENTITY = ("source_system", "source_key")
_STEP_IDENTITY = ("name", "started_at")
_SUSPENSION_IDENTITY = ("reason", "suspended_at")


class ChangeError(ValueError):
    """The new snapshot contradicts what was already sent; `field` names where (e.g. "steps[1].ended_at")."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


def events_between(previous: dict | None, current: dict) -> list[EventTuple]:
    """The events `current` adds to `previous` (None: the case is new), in the order they happened."""
    if previous is not None:
        for key in _IDENTITY:
            if previous.get(key) != current.get(key):
                raise ChangeError(key, f"changed from {previous.get(key)!r} to {current.get(key)!r}: not the same case")
        _check_nothing_dropped(previous, current, "")
    before = previous or {}
    found: list[tuple[str, int, int, str, dict]] = []  # (occurred_at, rank, arrival, type, data)

    def add(event_type: str, data: dict, occurred_at: str, rank: str | None = None) -> None:
        found.append((occurred_at, _RANK[rank or event_type], len(found), event_type, copy.deepcopy(data)))

    application = current["application"]
    if previous is None:
        add("application", application, application["applied_at"])
    else:
        _unchanged(before.get("application"), application, "application")

    _once(before, current, "acceptance", lambda a: add("acceptance", a, a["accepted_at"]))
    _steps(before.get("steps") or [], current.get("steps") or [], add)
    _suspensions(before.get("suspensions") or [], current.get("suspensions") or [], add)
    _once(
        before,
        current,
        "conclusion",
        lambda c: add("return" if c.get("result") == "2" else "conclusion", c, c["concluded_at"]),
    )
    _once(before, current, "evaluation", lambda e: add("evaluation", e, e["evaluated_at"]))

    found.sort(key=lambda item: item[:3])
    return [(event_type, data, occurred_at) for occurred_at, _, _, event_type, data in found]


def _once(before: dict, current: dict, section: str, emit: Any) -> None:
    """A dataset that is sent once (acceptance, conclusion, evaluation): new → emit, sent → must not change."""
    old, new = before.get(section), current.get(section)
    if old is None and new is not None:
        emit(new)
    elif old is not None:
        _unchanged(old, new, section)


def _steps(old_steps: list, new_steps: list, add: Any) -> None:
    for index, step in enumerate(new_steps):
        if index >= len(old_steps):
            add("step", {**step, "index": index}, step["started_at"])
            continue
        old = old_steps[index]
        for key in _STEP_IDENTITY:
            if old.get(key) != step.get(key):
                raise ChangeError(
                    f"steps[{index}].{key}",
                    f"changed from {old.get(key)!r} to {step.get(key)!r} after the step was sent "
                    "(a different step at the same position)",
                )
        if old != step:
            add("step", {**step, "index": index}, step.get("ended_at") or step["started_at"])


def _suspensions(old_list: list, new_list: list, add: Any) -> None:
    for index, suspension in enumerate(new_list):
        old = old_list[index] if index < len(old_list) else None
        if old is None:
            add("suspension", {key: suspension[key] for key in _SUSPENSION_IDENTITY}, suspension["suspended_at"])
        else:
            for key in _SUSPENSION_IDENTITY:
                if old.get(key) != suspension.get(key):
                    raise ChangeError(
                        f"suspensions[{index}].{key}",
                        f"changed from {old.get(key)!r} to {suspension.get(key)!r} after it was sent",
                    )
        resumed_at = suspension.get("resumed_at")
        if resumed_at is None:
            continue
        if old is not None and old.get("resumed_at") is not None:
            _unchanged(old.get("resumed_at"), resumed_at, f"suspensions[{index}].resumed_at")
            continue
        rank = "instant_resumption" if resumed_at == suspension["suspended_at"] else "resumption"
        add("resumption", {"resumed_at": resumed_at}, resumed_at, rank)


def _check_nothing_dropped(old: Any, new: Any, path: str) -> None:
    """Everything set in `old` is still set in `new` (values may differ; that is judged elsewhere)."""
    if isinstance(old, dict):
        if not isinstance(new, dict):
            raise ChangeError(path or "<snapshot>", "was a record and is now missing")
        for key, value in old.items():
            if value is None:
                continue
            here = f"{path}.{key}" if path else key
            if new.get(key) is None:
                raise ChangeError(here, "was set and is now missing: the legacy system went backwards")
            _check_nothing_dropped(value, new[key], here)
    elif isinstance(old, list):
        if not isinstance(new, list) or len(new) < len(old):
            count = len(new) if isinstance(new, list) else 0
            raise ChangeError(path, f"had {len(old)} entries and now has {count}: the legacy system went backwards")
        for index, value in enumerate(old):
            _check_nothing_dropped(value, new[index], f"{path}[{index}]")


def _unchanged(old: Any, new: Any, path: str) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                _unchanged(old.get(key), new.get(key), f"{path}.{key}")
    # Values stay out of the message: they may be personal data (证件号码) and messages reach logs.
    raise ChangeError(path, "changed after it was sent (the platform has no correction event for it)")
