"""Pydantic models of the case datasets (GB/T 39046-2020) and of the case event pushed to 渝快办.

The field names follow the shared contract (the case snapshot the mapping engine produces and the
case event the delivery worker pushes); each field's description carries the Chinese term of the
standard so that the published JSON Schema reads like the standard.

Validation here is what is *certain*: shapes, code patterns, enumerations, and that times exist on
the calendar. Check digits (证件号码, 统一社会信用代码) live in `tongban.codes`; cross-record rules (no
conclusion before acceptance …) live in `tongban.cases.statemachine`. The models do no I/O.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

# ---------------------------------------------------------------------------------------------
# Building blocks: times and codes
# ---------------------------------------------------------------------------------------------

TIMESTAMP_PATTERN = r"^[0-9]{8}T[0-9]{6}$"
DATE_PATTERN = r"^[0-9]{8}$"
# Custom JSON Schema formats: the pattern checks the shape, the format checker in
# tongban.cases.schema checks that the date exists (a pattern cannot reject 20240230).
TIMESTAMP_FORMAT = "gbt-datetime"
DATE_FORMAT = "gbt-date"

# 统一社会信用代码 alphabet (GB 32100-2015): digits and capitals without I, O, S, V, Z.
_CREDIT_CHAR = "[0-9A-HJ-NPQRTUWXY]"
CREDIT_CODE_PATTERN = rf"^{_CREDIT_CHAR}{{18}}$"
# 实施编码 = 18-char 统一社会信用代码 + 1-digit 行使层级 (1–7) + 12-char 基本编码
# (2 区划 + 2 事项类型 + 5 主项 + 3 子项, 子项 000 / 00Y / 001–999). See reference/standards.md.
ITEM_CODE_PATTERN = rf"^{_CREDIT_CHAR}{{18}}[1-7][0-9]{{9}}(?:[0-9]{{3}}|00Y)$"
REGION_PATTERN = r"^[0-9]{6}$"
ID_TYPE_PATTERN = r"^[0-9]{3}$"
CASE_NUMBER_MAX = 50


def parse_timestamp(value: str) -> datetime:
    """`YYYYMMDDThhmmss` (Beijing time, no zone) → naive datetime; ValueError if the date does not exist."""
    return datetime.strptime(value, "%Y%m%dT%H%M%S")


def _existing_timestamp(value: str) -> str:
    try:
        parse_timestamp(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an existing date and time (YYYYMMDDThhmmss)") from None
    return value


def _existing_date(value: str) -> str:
    try:
        datetime.strptime(value, "%Y%m%d")
    except ValueError:
        raise ValueError(f"{value!r} is not an existing date (YYYYMMDD)") from None
    return value


Timestamp = Annotated[
    str,
    Field(pattern=TIMESTAMP_PATTERN, json_schema_extra={"format": TIMESTAMP_FORMAT}),
    AfterValidator(_existing_timestamp),
]
Date = Annotated[
    str,
    Field(pattern=DATE_PATTERN, json_schema_extra={"format": DATE_FORMAT}),
    AfterValidator(_existing_date),
]
ItemCode = Annotated[str, Field(pattern=ITEM_CODE_PATTERN, min_length=31, max_length=31)]
CreditCode = Annotated[str, Field(pattern=CREDIT_CODE_PATTERN)]
Region = Annotated[str, Field(pattern=REGION_PATTERN)]
IdType = Annotated[str, Field(pattern=ID_TYPE_PATTERN)]
Text = Annotated[str, Field(min_length=1, max_length=500)]
LongText = Annotated[str, Field(max_length=4000)]

# The fields that name one legacy case, alike in its snapshot and in each of its events.
SourceSystem = Annotated[Text, Field(description="来源系统 source system")]
SourceKey = Annotated[Text, Field(description="来源办件标识 legacy case key")]
CaseItemCode = Annotated[ItemCode, Field(description="实施编码 implementation code (31 characters)")]
LocalItemCode = Annotated[Text | None, Field(description="本地事项编码 legacy/local item code")]
CaseRegion = Annotated[Region, Field(description="行政区划 region code (6 digits)")]


class _Dataset(BaseModel):
    # Unknown fields are errors, not silently dropped: a typo in a mapping file shows up at once.
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# The datasets of one case (the snapshot parts)
# ---------------------------------------------------------------------------------------------


class Material(_Dataset):
    name: Text = Field(description="材料名称 material name")
    count: int = Field(ge=0, description="材料份数 number of copies")


class Application(_Dataset):
    """办事申请 — the application; always present, always the first event of a case."""

    case_type: Literal["1", "2", "9"] = Field(description="办件类型 case type: 1 即办 · 2 承诺 · 9 其他")
    applicant_name: Text = Field(description="申请人名称 applicant name")
    applicant_kind: Literal["1", "2", "3", "4", "5", "6", "9"] = Field(
        description="申请人类型 applicant kind (userProp): 1 自然人 · 2 企业法人 · 3 事业法人 · 4 社会组织 · "
        "5 非法人企业 · 6 行政机关 · 9 其他"
    )
    applicant_id_type: IdType = Field(
        description="申请人证件类型 applicant ID type (n3): 111 居民身份证 · 001 统一社会信用代码 · 414 护照 · 999 其他"
    )
    applicant_id_number: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="申请人证件号码 applicant ID number"
    )
    applicant_phone: Annotated[str, Field(min_length=1, max_length=32)] | None = Field(
        default=None, description="申请人联系电话 applicant phone"
    )
    applicant_user_id: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="申请人统一用户标识 the applicant's unified user id (统一用户体系, resolved by tongban.identity)"
    )
    agent_name: Text | None = Field(default=None, description="代理人姓名 agent name")
    agent_id_type: IdType | None = Field(default=None, description="代理人证件类型 agent ID type (n3)")
    agent_id_number: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="代理人证件号码 agent ID number"
    )
    channel: Literal["1", "2", "3", "9"] = Field(description="申报来源 channel: 1 窗口 · 2 网上 · 3 移动端 · 9 其他")
    applied_at: Timestamp = Field(description="申请时间 application time, YYYYMMDDThhmmss, Beijing time")
    materials: list[Material] = Field(default_factory=list, description="申请材料 materials handed in")


class Acceptance(_Dataset):
    """事项受理 — the department accepted the case."""

    accepting_unit: Text = Field(description="受理单位 accepting unit")
    accepting_unit_code: CreditCode = Field(description="受理单位统一社会信用代码 accepting unit's credit code")
    accepted_by: Text = Field(description="受理人员 accepting officer")
    accepted_at: Timestamp = Field(description="受理时间 acceptance time, YYYYMMDDThhmmss")
    promised_at: Timestamp | None = Field(default=None, description="承诺办结时间 promised completion time")


class Step(_Dataset):
    """事项办理 — one handling step (环节)."""

    name: Text = Field(description="环节名称 step name")
    handler: Text = Field(description="处理人 handler")
    opinion: LongText | None = Field(default=None, description="处理意见 opinion")
    started_at: Timestamp = Field(description="环节开始时间 step start")
    ended_at: Timestamp | None = Field(default=None, description="环节结束时间 step end (null while 待办)")
    status: Literal["1", "2"] = Field(description="环节状态 step status: 1 待办 · 2 已办")
    action: Literal["通过", "退回", "其他"] = Field(description="业务动作 action: 通过 · 退回 · 其他")


class Suspension(_Dataset):
    """特别程序 — the clock stopped (extension, expert review …) and, once known, restarted."""

    reason: Text = Field(description="特别程序原因 reason for the suspension")
    suspended_at: Timestamp = Field(description="特别程序开始时间 suspension start")
    resumed_at: Timestamp | None = Field(default=None, description="特别程序结束时间 suspension end (null while suspended)")


class Conclusion(_Dataset):
    """事项办结 — the case concluded (result 1) or was returned/refused (result 2)."""

    concluded_at: Timestamp = Field(description="办结时间 conclusion time")
    result: Literal["1", "2"] = Field(description="办结结果 result: 1 准予/办结 · 2 不予/退回")
    result_note: LongText | None = Field(default=None, description="办结结果说明 result note")
    licence_name: Text | None = Field(default=None, description="证照名称 licence name")
    licence_number: Text | None = Field(default=None, description="证照编号 licence number")
    valid_from: Date | None = Field(default=None, description="有效期起 valid from, YYYYMMDD")
    valid_to: Date | None = Field(default=None, description="有效期止 valid to, YYYYMMDD")
    issuing_body: Text | None = Field(default=None, description="发证机关 issuing / sealing body")
    fees: float | None = Field(default=None, ge=0, description="收费金额 fees (yuan)")
    delivery: Annotated[str, Field(min_length=1, max_length=20)] | None = Field(
        default=None, description="送达方式 delivery method"
    )


class Evaluation(_Dataset):
    """好差评 — the applicant's evaluation, 1 非常满意 … 5 非常不满意 (normalised on entry)."""

    satisfaction: int = Field(ge=1, le=5, description="满意度 satisfaction: 1 非常满意 … 5 非常不满意")
    comment: LongText | None = Field(default=None, description="评价内容 comment")
    evaluated_at: Timestamp = Field(description="评价时间 evaluation time")


class CaseSnapshot(_Dataset):
    """One legacy case as the mapping engine sees it at one poll (the shared contract's snapshot)."""

    source_system: SourceSystem = Field(description="来源系统 source system (the mapping file's system name)")
    source_key: SourceKey
    item_code: CaseItemCode
    local_item_code: LocalItemCode = None
    region: CaseRegion
    application: Application = Field(description="办事申请 application")
    acceptance: Acceptance | None = Field(default=None, description="事项受理 acceptance")
    steps: list[Step] = Field(default_factory=list, description="事项办理 handling steps, in order")
    suspensions: list[Suspension] = Field(default_factory=list, description="特别程序 suspensions, in order")
    conclusion: Conclusion | None = Field(default=None, description="事项办结 conclusion")
    evaluation: Evaluation | None = Field(default=None, description="好差评 evaluation")


# ---------------------------------------------------------------------------------------------
# Event payloads (`data` of a case event)
# ---------------------------------------------------------------------------------------------


class StepData(Step):
    """A step event: the step plus its position, so that a re-sent (updated) step is recognisable."""

    index: int = Field(ge=0, description="环节序号 the step's position in the case's steps (0-based)")


class SuspensionData(_Dataset):
    reason: Text = Field(description="特别程序原因 reason for the suspension")
    suspended_at: Timestamp = Field(description="特别程序开始时间 suspension start")


class ResumptionData(_Dataset):
    resumed_at: Timestamp = Field(description="特别程序结束时间 suspension end")


class ConclusionData(Conclusion):
    result: Literal["1"] = Field(description="办结结果 result: 1 准予/办结 (a conclusion event)")


class ReturnData(Conclusion):
    result: Literal["2"] = Field(description="办结结果 result: 2 不予/退回 (a return event)")


EventType = Literal["application", "acceptance", "step", "suspension", "resumption", "conclusion", "return", "evaluation"]

# Event type → the model of its `data`, in natural lifecycle order.
DATA_MODELS: dict[str, type[BaseModel]] = {
    "application": Application,
    "acceptance": Acceptance,
    "step": StepData,
    "suspension": SuspensionData,
    "resumption": ResumptionData,
    "conclusion": ConclusionData,
    "return": ReturnData,
    "evaluation": Evaluation,
}
EVENT_TYPES: tuple[str, ...] = tuple(DATA_MODELS)


class CaseEvent(_Dataset):
    """One event of one case as pushed to the platform (the shared contract's case event)."""

    case_number: Annotated[str, Field(min_length=1, max_length=CASE_NUMBER_MAX)] = Field(
        description="办件编号 case number, assigned by the platform (统一赋码), opaque"
    )
    event: EventType = Field(description="事件类型 event type")
    sequence: int = Field(ge=1, description="事件序号 event sequence, 1-based per case, no gaps")
    source_system: SourceSystem
    source_key: SourceKey
    item_code: CaseItemCode
    local_item_code: LocalItemCode = None
    region: CaseRegion
    occurred_at: Timestamp = Field(description="发生时间 when the event happened, YYYYMMDDThhmmss")
    # The schema of `data` depends on `event` (DATA_MODELS); the JSON Schema expresses it with
    # if/then (tongban.cases.schema), the model with the validator below.
    data: dict[str, Any] = Field(description="事件数据 the dataset of this event (depends on event)")

    @model_validator(mode="after")
    def _data_fits_event(self) -> "CaseEvent":
        try:
            DATA_MODELS[self.event].model_validate(self.data)
        except ValidationError as error:
            # Re-raise with the location under `data`, so the message names data.applied_at and not applied_at.
            raise ValidationError.from_exception_data(
                "CaseEvent",
                [
                    {"type": e["type"], "loc": ("data", *e["loc"]), "input": e["input"], **({"ctx": e["ctx"]} if "ctx" in e else {})}
                    for e in error.errors()
                ],
            ) from None
        return self


def describe_errors(error: ValidationError) -> list[str]:
    """Human-readable `path: message` lines for a pydantic ValidationError."""
    lines = []
    for e in error.errors():
        path = ".".join(str(part) if not isinstance(part, int) else f"[{part}]" for part in e["loc"]).replace(".[", "[")
        lines.append(f"{path or '<record>'}: {e['msg']}")
    return lines
