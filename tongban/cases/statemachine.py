"""The case state machine: which event may follow which (the same rules on tongban's side and on the platform).

Rules (shared contract):
- `application` must be the first event of a case and occurs once.
- `acceptance` requires an application, once, and not after a conclusion/return.
- `step`, `suspension` require acceptance and no conclusion/return; `suspension` not while suspended;
  `resumption` only while suspended; `step` not while suspended.
- `conclusion` requires acceptance, not while suspended, once, not after return. `return` requires an
  application, not after conclusion/return (a case may be returned before or after acceptance).
- `evaluation` only after conclusion or return, once. After conclusion/return nothing but an evaluation.
- `sequence` must be exactly previous sequence + 1.

A violation is named by a short rule text such as "conclusion before acceptance" or "step after return";
the platform answers it in its 409 body and tongban quarantines with it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Iterable

from tongban.cases.models import EVENT_TYPES


class TransitionError(Exception):
    """An event that the case's state does not allow; `rule` names the rule it breaks."""

    def __init__(self, rule: str):
        super().__init__(rule)
        self.rule = rule


@dataclass(frozen=True)
class CaseState:
    """The platform's view of one case. Immutable: `apply` returns the next state."""

    last_sequence: int = 0
    accepted: bool = False
    suspended: bool = False
    concluded: bool = False
    returned: bool = False
    evaluated: bool = False

    @property
    def applied(self) -> bool:
        # The application is always the first event, so any accepted event means it happened.
        return self.last_sequence > 0

    @property
    def closed(self) -> bool:
        return self.concluded or self.returned

    def apply(self, event_type: str, sequence: int) -> "CaseState":
        """The state after `event_type` with `sequence`; TransitionError naming the rule if not allowed."""
        expected = self.last_sequence + 1
        if sequence != expected:
            # Checked first: a gap usually means an earlier event was lost, which would otherwise
            # show up as a misleading rule ("step before acceptance" when the acceptance went missing).
            kind = "gap" if sequence > expected else "out of order"
            raise TransitionError(f"sequence {kind}: expected {expected}, got {sequence}")
        rule = allowed(self, event_type)
        if rule is not None:
            raise TransitionError(rule)
        changes = {
            "acceptance": {"accepted": True},
            "suspension": {"suspended": True},
            "resumption": {"suspended": False},
            "conclusion": {"concluded": True},
            "return": {"returned": True},
            "evaluation": {"evaluated": True},
        }.get(event_type, {})
        return replace(self, last_sequence=sequence, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CaseState":
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    @classmethod
    def replay(cls, event_types: Iterable[str]) -> "CaseState":
        """The state after these events, numbered 1, 2, 3 … (TransitionError at the first bad one)."""
        state = cls()
        for event_type in event_types:
            state = state.apply(event_type, state.last_sequence + 1)
        return state


def allowed(state: CaseState, event_type: str) -> str | None:
    """The rule `event_type` would break in `state`, or None when it is allowed (sequence not considered)."""
    if event_type not in EVENT_TYPES:
        return f"unknown event type {event_type!r}"
    if event_type == "application":
        return "application twice" if state.applied else None
    if not state.applied:
        return f"{event_type} before application"

    if event_type == "evaluation":
        if state.evaluated:
            return "evaluation twice"
        if not state.closed:
            return "evaluation before conclusion"
        return None

    # After conclusion/return nothing but an evaluation.
    if state.concluded:
        return "conclusion twice" if event_type == "conclusion" else f"{event_type} after conclusion"
    if state.returned:
        return "return twice" if event_type == "return" else f"{event_type} after return"

    if event_type == "acceptance":
        return "acceptance twice" if state.accepted else None
    if event_type == "return":
        return None  # before or after acceptance, even while suspended
    if event_type == "resumption":
        return None if state.suspended else "resumption while not suspended"
    # step, suspension, conclusion
    if not state.accepted:
        return f"{event_type} before acceptance"
    if state.suspended:
        return f"{event_type} while suspended"
    return None
