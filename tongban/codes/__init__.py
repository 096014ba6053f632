"""Validators, parsers, generators and masks for the national codes the bus speaks
(see /work/shared/reference/standards.md). Every parser normalises its input first and raises
`CodeError(field, rule)` on bad input."""
from tongban.codes._text import CodeError, normalise
from tongban.codes.credit_code import (
    CREDIT_ALPHABET,
    CreditCode,
    OrgCode,
    credit_code_check_char,
    make_credit_code,
    org_code_check_char,
    parse_credit_code,
    parse_org_code,
)
from tongban.codes.id_number import IdNumber, id_number_check_char, make_id_number, parse_id_number
from tongban.codes.item_code import ITEM_TYPES, LEVELS, ItemCode, parse_item_code
from tongban.codes.licence_id import LicenceId, licence_check_char, make_licence_id, parse_licence_id
from tongban.codes.masking import mask_id_number, mask_phone, mask_text
from tongban.codes.regions import CHONGQING_CODE, CHONGQING_UNITS, RETIRED_CODES, Region, parse_region

__all__ = [
    "CHONGQING_CODE", "CHONGQING_UNITS", "CREDIT_ALPHABET", "ITEM_TYPES", "LEVELS", "RETIRED_CODES",
    "CodeError", "CreditCode", "IdNumber", "ItemCode", "LicenceId", "OrgCode", "Region",
    "credit_code_check_char", "id_number_check_char", "licence_check_char", "org_code_check_char",
    "make_credit_code", "make_id_number", "make_licence_id",
    "mask_id_number", "mask_phone", "mask_text", "normalise",
    "parse_credit_code", "parse_id_number", "parse_item_code", "parse_licence_id", "parse_org_code",
    "parse_region",
]
