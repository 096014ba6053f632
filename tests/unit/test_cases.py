"""Case models, the published schema, the state machine and change detection (tongban.cases)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tongban.cases.changes import ChangeError, events_between
from tongban.cases.models import CaseEvent, CaseSnapshot, describe_errors
from tongban.cases.samples import SAMPLE_UNIT_CODE, sample_event, sample_snapshot
from tongban.cases.schema import SCHEMA_PATH, case_event_schema, render_schema, validate_event
from tongban.cases.statemachine import CaseState, TransitionError, allowed

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["applied", "accepted", "handling", "suspended", "resumed", "concluded", "evaluated"]


def as_events(pushed, snapshot=None):
    """events_between tuples → full case event dicts numbered 1, 2, 3 …"""
    return [
        sample_event("CASE-1", event_type, number, data, occurred_at, snapshot)
        for number, (event_type, data, occurred_at) in enumerate(pushed, start=1)
    ]


# --------------------------------------------------------------------------------------------- models


def test_the_sample_case_is_valid_at_every_stage():
    for stage in STAGES:
        CaseSnapshot.model_validate(sample_snapshot(stage))


def _set(path, value):
    def mutate(snapshot):
        target = snapshot
        *parents, last = path
        for part in parents:
            target = target[part]
        target[last] = value
    return mutate


@pytest.mark.parametrize(
    "mutate, field",
    [
        (_set(["application", "applied_at"], "20240230T093000"), "application.applied_at"),  # no 30 February
        (_set(["application", "applied_at"], "2024-03-01 09:30"), "application.applied_at"),
        (_set(["item_code"], "11440100696927671X344211181700"), "item_code"),  # 30 characters
        (_set(["item_code"], "11440100696927671X8442111817001"), "item_code"),  # 行使层级 8 does not exist
        (_set(["region"], "50010"), "region"),
        (_set(["application", "applicant_id_type"], "11"), "application.applicant_id_type"),
        (_set(["application", "case_type"], "3"), "application.case_type"),
        (_set(["application", "materials"], [{"name": "营业执照", "count": -1}]), "application.materials[0].count"),
        (_set(["acceptance", "accepting_unit_code"], "11500000MB154189IT"), "acceptance.accepting_unit_code"),
        (_set(["steps", 0, "status"], "3"), "steps[0].status"),
        (_set(["conclusion", "result"], "3"), "conclusion.result"),
        (_set(["conclusion", "valid_to"], "20290231"), "conclusion.valid_to"),
        (_set(["evaluation", "satisfaction"], 6), "evaluation.satisfaction"),
        (_set(["evaluation", "satisfaction"], 0), "evaluation.satisfaction"),
        (_set(["application", "applicant_nmae"], "张三"), "application.applicant_nmae"),  # typo is not dropped
    ],
)
def test_a_bad_snapshot_is_rejected_naming_the_field(mutate, field):
    snapshot = sample_snapshot()
    mutate(snapshot)
    with pytest.raises(ValidationError) as caught:
        CaseSnapshot.model_validate(snapshot)
    assert [line.split(":")[0] for line in describe_errors(caught.value)] == [field]


def test_event_data_is_validated_by_event_type_and_errors_name_the_data_field():
    snapshot = sample_snapshot()
    returned = {**snapshot["conclusion"], "result": "1"}  # a return must carry result 2
    with pytest.raises(ValidationError) as caught:
        CaseEvent.model_validate(sample_event("CASE-1", "return", 3, returned, returned["concluded_at"]))
    assert describe_errors(caught.value)[0].startswith("data.result:")

    application = {**snapshot["application"], "applied_at": "20241301T000000"}
    with pytest.raises(ValidationError) as caught:
        CaseEvent.model_validate(sample_event("CASE-1", "application", 1, application, "20240301T093000"))
    assert describe_errors(caught.value)[0].startswith("data.applied_at:")


def test_case_number_longer_than_50_is_rejected():
    event = as_events(events_between(None, sample_snapshot("applied")))[0]
    event["case_number"] = "X" * 51
    with pytest.raises(ValidationError) as caught:
        CaseEvent.model_validate(event)
    assert describe_errors(caught.value)[0].startswith("case_number:")


# --------------------------------------------------------------------------------------------- schema


def test_committed_schema_file_equals_the_generated_schema():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_schema(), (
        "case_event.schema.json is stale: python -m tongban.cases.schema > tongban/cases/case_event.schema.json"
    )


def test_schema_entry_point_prints_the_schema():
    out = subprocess.run([sys.executable, "-m", "tongban.cases.schema"], cwd=ROOT, capture_output=True, check=True)
    assert json.loads(out.stdout) == case_event_schema()
    assert case_event_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_event_of_the_sample_lifecycle_passes_schema_and_model():
    events = as_events(events_between(None, sample_snapshot()))
    assert [e["event"] for e in events] == [
        "application", "acceptance", "step", "suspension", "resumption", "step", "conclusion", "evaluation",
    ]
    for event in events:
        assert validate_event(event) == []
        CaseEvent.model_validate(event)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda e: e["data"].update(applied_at="20240230T093000"), "data.applied_at: '20240230T093000' is not an existing date"),
        (lambda e: e["data"].update(case_type="7"), "data.case_type:"),
        (lambda e: e["data"]["materials"].append({"name": "身份证", "count": "two"}), "data.materials[1].count:"),
        (lambda e: e.update(sequence=0), "sequence:"),
        (lambda e: e.update(region="5001030"), "region:"),
        (lambda e: e.update(event="approval"), "event:"),
        (lambda e: e.update(surprise=True), "<event>: Additional properties are not allowed ('surprise' was unexpected)"),
        (lambda e: e.pop("occurred_at"), "<event>: 'occurred_at' is a required property"),
    ],
)
def test_validate_event_reports_path_and_message(mutate, expected):
    event = as_events(events_between(None, sample_snapshot("applied")))[0]
    mutate(event)
    errors = validate_event(event)
    assert any(error.startswith(expected) for error in errors), errors


def test_validate_event_checks_data_against_the_event_type():
    snapshot = sample_snapshot()
    event = sample_event("CASE-1", "evaluation", 9, {**snapshot["evaluation"], "satisfaction": 6}, "20240305T090000")
    assert validate_event(event) == ["data.satisfaction: 6 is greater than the maximum of 5"]
    returned = sample_event("CASE-1", "return", 2, snapshot["conclusion"], "20240304T110000")  # result "1"
    assert validate_event(returned) == ["data.result: '2' was expected"]


# --------------------------------------------------------------------------------------------- state machine


def state_after(*event_types):
    return CaseState.replay(event_types)


NOTHING = ()
APPLIED = ("application",)
ACCEPTED = ("application", "acceptance")
SUSPENDED = ACCEPTED + ("suspension",)
RESUMED = SUSPENDED + ("resumption",)
RETURNED_WHILE_SUSPENDED = SUSPENDED + ("return",)
CONCLUDED = ACCEPTED + ("step", "conclusion")
EVALUATED = CONCLUDED + ("evaluation",)
RETURNED_EARLY = APPLIED + ("return",)
RETURNED = ACCEPTED + ("step", "return")


@pytest.mark.parametrize("history, event_type", [
    (NOTHING, "application"),
    (APPLIED, "acceptance"),
    # step and suspension: after acceptance, and a step again once resumed
    (ACCEPTED, "step"),
    (RESUMED, "step"),
    (ACCEPTED, "suspension"),
    (SUSPENDED, "resumption"),
    (ACCEPTED, "conclusion"),
    # return: needs an application only, before or after acceptance
    (APPLIED, "return"),
    (ACCEPTED, "return"),
    (SUSPENDED, "return"),
    # evaluation: after conclusion or return
    (CONCLUDED, "evaluation"),
    (RETURNED_EARLY, "evaluation"),
])
def test_an_allowed_transition_is_applied(history, event_type):
    state = state_after(*history)
    assert allowed(state, event_type) is None
    after = state.apply(event_type, state.last_sequence + 1)
    assert after.last_sequence == state.last_sequence + 1


@pytest.mark.parametrize("history, event_type, rule", [
    # application: first, once
    (APPLIED, "application", "application twice"),
    (NOTHING, "acceptance", "acceptance before application"),
    (NOTHING, "step", "step before application"),
    (NOTHING, "conclusion", "conclusion before application"),
    (NOTHING, "return", "return before application"),
    (NOTHING, "evaluation", "evaluation before application"),
    # acceptance: once, not after conclusion/return
    (ACCEPTED, "acceptance", "acceptance twice"),
    (RETURNED_EARLY, "acceptance", "acceptance after return"),
    (CONCLUDED, "acceptance", "acceptance after conclusion"),
    # step: needs acceptance, not while suspended, not after conclusion/return
    (APPLIED, "step", "step before acceptance"),
    (SUSPENDED, "step", "step while suspended"),
    (CONCLUDED, "step", "step after conclusion"),
    (RETURNED, "step", "step after return"),
    # suspension / resumption
    (APPLIED, "suspension", "suspension before acceptance"),
    (SUSPENDED, "suspension", "suspension while suspended"),
    (CONCLUDED, "suspension", "suspension after conclusion"),
    (ACCEPTED, "resumption", "resumption while not suspended"),
    (RESUMED, "resumption", "resumption while not suspended"),
    (RETURNED_WHILE_SUSPENDED, "resumption", "resumption after return"),
    # conclusion: needs acceptance, not while suspended, once, not after return
    (APPLIED, "conclusion", "conclusion before acceptance"),
    (SUSPENDED, "conclusion", "conclusion while suspended"),
    (CONCLUDED, "conclusion", "conclusion twice"),
    (RETURNED, "conclusion", "conclusion after return"),
    # return: not after conclusion/return
    (CONCLUDED, "return", "return after conclusion"),
    (RETURNED, "return", "return twice"),
    # evaluation: only after conclusion or return, once
    (ACCEPTED, "evaluation", "evaluation before conclusion"),
    (EVALUATED, "evaluation", "evaluation twice"),
    (EVALUATED, "step", "step after conclusion"),
    # not an event at all
    (APPLIED, "approval", "unknown event type 'approval'"),
])
def test_a_refused_transition_names_its_rule(history, event_type, rule):
    state = state_after(*history)
    assert allowed(state, event_type) == rule
    with pytest.raises(TransitionError) as caught:
        state.apply(event_type, state.last_sequence + 1)
    assert caught.value.rule == rule


def test_apply_returns_a_new_state_and_leaves_the_old_one_alone():
    before = state_after(*ACCEPTED)
    after = before.apply("suspension", 3)
    assert (before.suspended, after.suspended) == (False, True)
    assert after.apply("resumption", 4).suspended is False
    assert CaseState.from_dict(after.to_dict()) == after


@pytest.mark.parametrize("sequence, rule", [(4, "sequence gap: expected 3, got 4"), (2, "sequence out of order: expected 3, got 2")])
def test_sequence_must_be_previous_plus_one(sequence, rule):
    with pytest.raises(TransitionError) as caught:
        state_after(*ACCEPTED).apply("step", sequence)
    assert caught.value.rule == rule


# --------------------------------------------------------------------------------------------- change detection


def test_events_between_follows_the_lifecycle_poll_by_poll():
    previous, pushed = None, []
    for stage in STAGES:
        current = sample_snapshot(stage)
        pushed.append([event_type for event_type, _, _ in events_between(previous, current)])
        previous = current
    assert pushed == [
        ["application"], ["acceptance"], ["step"], ["suspension"], ["resumption"], ["step", "conclusion"], ["evaluation"],
    ]
    assert events_between(previous, copy.deepcopy(previous)) == []  # nothing new, nothing sent


def test_event_data_and_times_come_from_the_snapshot():
    snapshot = sample_snapshot()
    events = events_between(None, snapshot)
    step_type, step_data, step_at = events[2]
    assert (step_type, step_data["index"], step_data["name"], step_at) == ("step", 0, "审查", "20240301T100000")
    assert events[3] == ("suspension", {"reason": "专家评审", "suspended_at": "20240302T120000"}, "20240302T120000")
    assert events[4] == ("resumption", {"resumed_at": "20240303T170000"}, "20240303T170000")
    assert events[6][1] == snapshot["conclusion"]
    step_data["name"] = "changed"  # the caller owns what it got back; the snapshot is untouched
    assert snapshot["steps"][0]["name"] == "审查"


def test_a_result_2_conclusion_is_a_return_and_may_come_before_acceptance():
    refused = sample_snapshot("applied", conclusion={**sample_snapshot()["conclusion"], "result": "2"})
    events = events_between(sample_snapshot("applied"), refused)
    assert [e[0] for e in events] == ["return"]
    assert CaseState.replay(["application", "return"]).returned


def test_a_step_that_changes_after_it_was_sent_is_sent_again_with_its_index():
    pending = sample_snapshot("accepted")
    pending["steps"] = [{"name": "审查", "handler": "王五", "opinion": None, "started_at": "20240301T100000",
                         "ended_at": None, "status": "1", "action": "其他"}]
    done = copy.deepcopy(pending)
    done["steps"][0].update(opinion="同意", ended_at="20240302T110000", status="2", action="通过")
    done["steps"].append({"name": "决定", "handler": "赵六", "opinion": None, "started_at": "20240302T110000",
                          "ended_at": None, "status": "1", "action": "其他"})
    events = events_between(pending, done)
    assert [(e[0], e[1]["index"], e[1]["status"], e[2]) for e in events] == [
        ("step", 0, "2", "20240302T110000"),  # the update, at its end time
        ("step", 1, "1", "20240302T110000"),  # the new step
    ]


def test_a_jump_from_applied_to_concluded_sends_what_is_known_in_time_order():
    events = events_between(sample_snapshot("applied"), sample_snapshot("concluded"))
    assert [e[0] for e in events] == ["acceptance", "step", "suspension", "resumption", "step", "conclusion"]


def test_a_jump_without_acceptance_data_is_sent_and_rejected_by_the_state_machine():
    no_acceptance = sample_snapshot("concluded", acceptance=None, steps=[], suspensions=[])
    events = events_between(sample_snapshot("applied"), no_acceptance)
    assert [e[0] for e in events] == ["conclusion"]  # nothing invented
    with pytest.raises(TransitionError) as caught:
        state_after(*APPLIED).apply("conclusion", 2)
    assert caught.value.rule == "conclusion before acceptance"


def test_ties_follow_the_lifecycle_order():
    snapshot = sample_snapshot("resumed")
    instant = "20240301T100000"  # accepted, step started, suspended and resumed in the same second
    snapshot["acceptance"]["accepted_at"] = instant
    snapshot["suspensions"] = [{"reason": "补正", "suspended_at": instant, "resumed_at": instant}]
    order = [e[0] for e in events_between(sample_snapshot("applied"), snapshot)]
    assert order == ["acceptance", "step", "suspension", "resumption"]

    later = sample_snapshot("resumed")  # resumed the second the next step starts: resumption goes first
    later["steps"].append({**later["steps"][0], "name": "复审", "started_at": "20240303T170000", "ended_at": None,
                           "status": "1", "opinion": None})
    order = [e[0] for e in events_between(sample_snapshot("suspended"), later)]
    assert order == ["resumption", "step"]


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda s: s.update(acceptance=None), "acceptance"),
        (lambda s: s["steps"].pop(), "steps"),
        (lambda s: s["steps"][0].update(ended_at=None), "steps[0].ended_at"),
        (lambda s: s["suspensions"][0].update(resumed_at=None), "suspensions[0].resumed_at"),
        (lambda s: s.update(evaluation=None), "evaluation"),
        (lambda s: s["application"].update(applicant_phone=None), "application.applicant_phone"),
        (lambda s: s["application"].update(applicant_name="张三丰"), "application.applicant_name"),
        (lambda s: s["acceptance"].update(accepting_unit_code=SAMPLE_UNIT_CODE[:-1] + "0"), "acceptance.accepting_unit_code"),
        (lambda s: s["conclusion"].update(result="2"), "conclusion.result"),
        (lambda s: s["steps"][0].update(name="初审"), "steps[0].name"),
        (lambda s: s["suspensions"][0].update(suspended_at="20240302T130000"), "suspensions[0].suspended_at"),
        (lambda s: s.update(source_key="SB2024000999"), "source_key"),
    ],
)
def test_a_legacy_system_going_backwards_raises_change_error_naming_the_field(mutate, field):
    previous = sample_snapshot()
    current = copy.deepcopy(previous)
    mutate(current)
    with pytest.raises(ChangeError) as caught:
        events_between(previous, current)
    assert caught.value.field == field
    assert "11010519491231002X" not in str(caught.value)  # no personal data in messages


# --------------------------------------------------------------------------------------------- property


@st.composite
def lifecycles(draw):
    """Snapshots of one valid lifecycle, one fact at a time, at strictly increasing times."""
    clock = datetime(2024, 3, 1, 9, 0, 0)

    def tick():
        nonlocal clock
        clock += timedelta(minutes=draw(st.integers(1, 600)))
        return clock.strftime("%Y%m%dT%H%M%S")

    snapshot = sample_snapshot("applied")
    snapshot["application"]["applied_at"] = tick()
    snapshots = [copy.deepcopy(snapshot)]
    state = state_after(*APPLIED)
    for _ in range(draw(st.integers(0, 12))):
        options = [t for t in ("acceptance", "step", "suspension", "resumption", "conclusion", "return", "evaluation")
                   if allowed(state, t) is None]
        if not options:
            break
        fact = draw(st.sampled_from(options))
        at = tick()
        if fact == "acceptance":
            snapshot["acceptance"] = {**sample_snapshot()["acceptance"], "accepted_at": at, "promised_at": None}
        elif fact == "step":
            ended = draw(st.booleans())
            snapshot["steps"].append({
                "name": f"环节{len(snapshot['steps']) + 1}", "handler": "王五", "opinion": None, "started_at": at,
                "ended_at": at if ended else None, "status": "2" if ended else "1", "action": "通过" if ended else "其他",
            })
        elif fact == "suspension":
            snapshot["suspensions"].append({"reason": "专家评审", "suspended_at": at, "resumed_at": None})
        elif fact == "resumption":
            snapshot["suspensions"][-1]["resumed_at"] = at
        elif fact in ("conclusion", "return"):
            snapshot["conclusion"] = {**sample_snapshot()["conclusion"], "concluded_at": at,
                                      "result": "1" if fact == "conclusion" else "2"}
        else:
            snapshot["evaluation"] = {"satisfaction": draw(st.integers(1, 5)), "comment": None, "evaluated_at": at}
        state = state.apply(fact, state.last_sequence + 1)
        snapshots.append(copy.deepcopy(snapshot))
    return snapshots


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_polling_any_prefix_chain_sends_the_same_events_as_one_poll_of_the_end(data):
    snapshots = data.draw(lifecycles())
    i = data.draw(st.integers(0, len(snapshots) - 1))
    j = data.draw(st.integers(i, len(snapshots) - 1))
    k = data.draw(st.integers(j, len(snapshots) - 1))
    s1, s2, s3 = snapshots[i], snapshots[j], snapshots[k]
    chained = events_between(None, s1) + events_between(s1, s2) + events_between(s2, s3)
    assert chained == events_between(None, s3)
    CaseState.replay(event_type for event_type, _, _ in chained)  # and the platform accepts them in that order
    for event in as_events(chained, s3):
        assert validate_event(event) == []
