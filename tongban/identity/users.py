"""Legacy user records: normalised and validated before anything is resolved, and the errors that say why
an applicant cannot carry a unified user id (the pipeline quarantines them at stage "identity")."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tongban import codes
from tongban.platform.client import PlatformTransient

ID_CARD = "111"        # 居民身份证 (natural persons)
CREDIT_CODE = "001"    # 统一社会信用代码 (legal persons and other organisations)
RESOLVABLE = (ID_CARD, CREDIT_CODE)
NATURAL_PERSON = "1"   # applicant kind (userProp) 1 自然人; 2–6 are legal persons and organisations

_PHONE = re.compile(r"^(?:\+?86)?(1[3-9]\d{9}|0\d{2,3}\d{7,8})$")


class IdentityError(Exception):
    """The applicant of a record cannot be given a unified user id; `kind` says why (for counting)."""

    def __init__(self, kind: str, field: str, rule: str):
        super().__init__(f"{field}: {rule}")
        self.kind, self.field, self.rule = kind, field, rule


class IdentityUnresolved(IdentityError):
    """The unified user service does not know the number (unknown), knows several users (ambiguous), or the
    number cannot be asked about (invalid, unsupported id type)."""


class IdentityConflict(IdentityError):
    """The legacy data contradicts itself; flagged for an operator, never guessed (`conflict_id`)."""

    def __init__(self, kind: str, field: str, rule: str, conflict_id: int | None = None):
        super().__init__(kind, field, rule)
        self.conflict_id = conflict_id


class IdentityThrottled(PlatformTransient):
    """The service kept answering 429: transient, so the run fails before its watermark moves."""


@dataclass(frozen=True)
class LegacyUser:
    """One user as a legacy system knows them, normalised. `id_number` is personal data: never print it."""

    system: str
    id_type: str
    id_number: str
    kind: str | None = None          # applicant kind (userProp), when the record says
    name: str | None = None
    account_id: str | None = None    # the legacy system's own account id, when it has one
    phone: str | None = None

    @property
    def masked(self) -> str:
        return codes.mask_id_number(self.id_number)

    def __repr__(self) -> str:  # dataclass repr would print the number into tracebacks and logs
        return f"LegacyUser(system={self.system!r}, id_type={self.id_type!r}, id_number={self.masked!r}, " \
               f"account_id={self.account_id!r})"


def normalise_phone(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = re.sub(r"[\s\-()]", "", codes.normalise(str(value)))
    match = _PHONE.match(text)
    if not match:
        raise IdentityUnresolved("invalid", "phone", f"{codes.mask_text(str(value))!s} is not a mainland mobile or "
                                                     "landline number")
    return match.group(1)


def normalise_user(system: str, record: dict[str, Any]) -> LegacyUser:
    """A legacy user record (`id_type`, `id_number`, optional `kind`, `name`, `account_id`, `phone`) →
    LegacyUser, or IdentityUnresolved naming the field and the rule (with the number masked)."""
    id_type = str(record.get("id_type") or "").strip()
    raw = record.get("id_number")
    if raw in (None, ""):
        raise IdentityUnresolved("invalid", "id_number", "missing")
    number = codes.normalise(str(raw))
    if id_type not in RESOLVABLE:
        raise IdentityUnresolved("unsupported", "id_type",
                                 f"证件类型 {id_type or '(none)'} cannot be resolved by the unified user service "
                                 f"(only {ID_CARD} 居民身份证 and {CREDIT_CODE} 统一社会信用代码)")
    try:
        if id_type == ID_CARD:
            number = codes.parse_id_number(number).value
        else:
            number = codes.parse_credit_code(number, strict=False).value
    except codes.CodeError as exc:
        raise IdentityUnresolved("invalid", "id_number", f"{codes.mask_id_number(number)}: {exc.rule}") from None
    account = record.get("account_id")
    return LegacyUser(
        system=system, id_type=id_type, id_number=number,
        kind=str(record["kind"]) if record.get("kind") not in (None, "") else None,
        name=str(record["name"]).strip() if record.get("name") else None,
        account_id=str(account).strip() if account not in (None, "") else None,
        phone=normalise_phone(record.get("phone")),
    )


def user_from_snapshot(snapshot: dict[str, Any], account_id: str | None = None) -> LegacyUser:
    """The applicant of a case snapshot (the mapping already validated the number by its type)."""
    application = snapshot.get("application") or {}
    return normalise_user(snapshot.get("source_system", ""), {
        "id_type": application.get("applicant_id_type"), "id_number": application.get("applicant_id_number"),
        "kind": application.get("applicant_kind"), "name": application.get("applicant_name"),
        "account_id": account_id,
        # The phone is carried, not required: a bad phone must not keep a case from its applicant.
        "phone": None,
    })
