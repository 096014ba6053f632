"""Cases (办件): the GB/T 39046-2020 datasets, the case event schema, the state machine and change detection.

- `tongban.cases.models` — pydantic models (CaseSnapshot, CaseEvent and the datasets).
- `tongban.cases.schema` — the published JSON Schema and `validate_event`.
- `tongban.cases.statemachine` — `CaseState`, `allowed`, `TransitionError`.
- `tongban.cases.changes` — `events_between`, `ChangeError`.
"""
