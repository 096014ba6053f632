"""电子证照 (electronic licence) documents: the XML a department seals and sends through the bus.

The elements carry the GB/T 36903 core metadata; the identifier is a GB/T 36904 电子证照标识 whose check character
(ISO/IEC 7064 MOD 37,36) is computed and checked by `tongban.codes`. The licence file itself (OFD, GB/T 36905) is
out of scope: face data travels as name/value items.

    <Licence xmlns="urn:tongban:seal:licence:1" version="1">
      <Identifier>1.2.156.3005.2.….001.X</Identifier>   证照标识
      <TypeName/> <TypeCode/>                           证照类型名称 / 代码
      <LicenceName/> <LicenceNumber/>                   证照名称 / 编号
      <Issuer/> <IssuerCode/>                           发证机构 / 代码 (统一社会信用代码)
      <IssueDate>2024-03-01</IssueDate>                 发证日期
      <Holder/> <HolderCode codeType="001"/>            持证主体 / 代码 (111 公民身份号码 · 001 统一社会信用代码)
      <ValidFrom/> <ValidUntil/>                        有效期起始 / 截止 (ValidUntil absent: 长期)
      <Region>500103</Region>                           行政区划
      <FaceData><Item name="…">…</Item></FaceData>      照面信息 (optional)
    </Licence>

`parse_licence` must be given the element returned by `verify_sealed` (the verified data), never the tree as
received: only that element is covered by the seal.
"""
from __future__ import annotations

import datetime as dt
import re

from lxml import etree

from tongban.codes import CodeError, make_licence_id, parse_credit_code, parse_id_number, parse_licence_id

LICENCE_NS = "urn:tongban:seal:licence:1"
HOLDER_CODE_TYPES = {"111": "公民身份号码", "001": "统一社会信用代码"}
_REGION = re.compile(r"^[0-9]{6}([0-9]{3}){0,2}$")
_REQUIRED = ("Identifier", "TypeName", "TypeCode", "LicenceName", "LicenceNumber", "Issuer", "IssuerCode",
             "IssueDate", "Holder", "HolderCode", "ValidFrom", "Region")


class LicenceError(ValueError):
    """A licence that breaks a rule; the message names the licence, the field and the rule."""

    def __init__(self, licence: str | None, field: str, rule: str):
        super().__init__(f"licence {licence or '<unnumbered>'}: field {field!r} {rule}")
        self.licence, self.field, self.rule = licence, field, rule


def _q(tag: str) -> str:
    return f"{{{LICENCE_NS}}}{tag}"


def _check_holder_code(licence: str, code: str, code_type: str) -> None:
    if code_type not in HOLDER_CODE_TYPES:
        raise LicenceError(licence, "holder_code_type", f"must be 111 (公民身份号码) or 001 (统一社会信用代码), "
                                                        f"got {code_type!r}")
    try:
        if code_type == "111":
            parse_id_number(code)
        else:
            parse_credit_code(code, strict=False)  # registered codes that fail the checksum exist: accept them
    except CodeError as exc:  # the CodeError rule never repeats the value: safe to log
        raise LicenceError(licence, "holder_code", exc.rule) from None


def _check_common(licence: str, fields: dict) -> None:
    for name, value in fields.items():
        if name in ("valid_until", "face_data"):
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            raise LicenceError(licence, name, "is required")
    if not _REGION.match(fields["region"]):
        raise LicenceError(licence, "region", "must be a GB/T 2260 code of 6, 9 or 12 digits")
    try:
        parse_credit_code(fields["issuer_code"], strict=False)
    except CodeError as exc:
        raise LicenceError(licence, "issuer_code", f"must be the issuer's 统一社会信用代码: {exc.rule}") from None
    _check_holder_code(licence, fields["holder_code"], fields["holder_code_type"])
    if fields["valid_until"] is not None and fields["valid_until"] < fields["valid_from"]:
        raise LicenceError(licence, "valid_until", "must not be before valid_from")


def build_licence(*, type_name: str, type_code: str, licence_name: str, licence_number: str, issuer: str,
                  issuer_code: str, issue_date: dt.date, holder: str, holder_code: str, holder_code_type: str,
                  valid_from: dt.date, region: str, serial: str, valid_until: dt.date | None = None,
                  version: int = 1, face_data: dict[str, str] | None = None) -> bytes:
    """Build an unsealed licence document (UTF-8 XML bytes); the identifier is derived from type code, issuer
    code, serial and version with its MOD 37,36 check character."""
    fields = dict(type_name=type_name, type_code=type_code, licence_name=licence_name,
                  licence_number=licence_number, issuer=issuer, issuer_code=issuer_code, issue_date=issue_date,
                  holder=holder, holder_code=holder_code, holder_code_type=holder_code_type,
                  valid_from=valid_from, valid_until=valid_until, region=region, serial=serial)
    _check_common(licence_number, fields)
    try:
        identifier = make_licence_id(type_code, issuer_code, serial, version)
        parse_licence_id(identifier)
    except CodeError as exc:
        raise LicenceError(licence_number, "identifier", exc.rule) from None

    root = etree.Element(_q("Licence"), nsmap={None: LICENCE_NS}, version="1")

    def add(tag: str, text: str, **attrs) -> None:
        etree.SubElement(root, _q(tag), **attrs).text = text

    add("Identifier", identifier)
    add("TypeName", type_name)
    add("TypeCode", type_code)
    add("LicenceName", licence_name)
    add("LicenceNumber", licence_number)
    add("Issuer", issuer)
    add("IssuerCode", issuer_code)
    add("IssueDate", issue_date.isoformat())
    add("Holder", holder)
    add("HolderCode", holder_code, codeType=holder_code_type)
    add("ValidFrom", valid_from.isoformat())
    if valid_until is not None:
        add("ValidUntil", valid_until.isoformat())
    add("Region", region)
    if face_data:
        face = etree.SubElement(root, _q("FaceData"))
        for name, value in face_data.items():
            etree.SubElement(face, _q("Item"), name=name).text = value
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _date(licence: str, field: str, text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise LicenceError(licence, field, f"must be a date YYYY-MM-DD, got {text!r}") from None


def parse_licence(verified_element: etree._Element) -> dict:
    """Read a verified licence element into a dict, checking the identifier and the metadata rules."""
    if verified_element is None or verified_element.tag != _q("Licence"):
        tag = None if verified_element is None else verified_element.tag
        raise LicenceError(None, "root", f"must be <Licence xmlns={LICENCE_NS!r}>, got {tag!r}")

    def text(tag: str) -> str | None:
        node = verified_element.find(_q(tag))
        return node.text.strip() if node is not None and node.text else None

    licence = text("LicenceNumber") or text("Identifier")
    for tag in _REQUIRED:
        if text(tag) is None:
            raise LicenceError(licence, tag, "is required")
    holder_code_node = verified_element.find(_q("HolderCode"))
    fields = {
        "identifier": text("Identifier"),
        "type_name": text("TypeName"),
        "type_code": text("TypeCode"),
        "licence_name": text("LicenceName"),
        "licence_number": text("LicenceNumber"),
        "issuer": text("Issuer"),
        "issuer_code": text("IssuerCode"),
        "issue_date": _date(licence, "IssueDate", text("IssueDate")),
        "holder": text("Holder"),
        "holder_code": text("HolderCode"),
        "holder_code_type": holder_code_node.get("codeType"),
        "valid_from": _date(licence, "ValidFrom", text("ValidFrom")),
        "valid_until": _date(licence, "ValidUntil", text("ValidUntil")),
        "region": text("Region"),
        "face_data": {item.get("name"): item.text or ""
                      for item in verified_element.iterfind(f"{_q('FaceData')}/{_q('Item')}")},
    }
    try:
        parts = parse_licence_id(fields["identifier"])
    except CodeError as exc:
        raise LicenceError(licence, "identifier", exc.rule) from None
    if parts.type_code != fields["type_code"].upper() or parts.issuer_code != fields["issuer_code"].upper():
        raise LicenceError(licence, "identifier", "type code and issuer code must match TypeCode and IssuerCode")
    check_fields = {k: v for k, v in fields.items() if k not in ("identifier", "face_data")}
    check_fields["serial"] = parts.serial
    _check_common(licence, check_fields)
    fields["serial"], fields["version"] = parts.serial, parts.version
    return fields
