"""National code validators: check digits round-trip, edge cases that naive implementations get wrong,
normalisation, regions, item codes, licence identifiers and masking."""
from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tongban.codes import (
    CHONGQING_UNITS,
    CREDIT_ALPHABET,
    RETIRED_CODES,
    CodeError,
    credit_code_check_char,
    id_number_check_char,
    licence_check_char,
    make_credit_code,
    make_id_number,
    make_licence_id,
    mask_id_number,
    mask_phone,
    mask_text,
    normalise,
    org_code_check_char,
    parse_credit_code,
    parse_id_number,
    parse_item_code,
    parse_licence_id,
    parse_org_code,
    parse_region,
)

DIGITS = "0123456789"
ALNUM = DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _mutations(value: str, alphabet: str, data: st.DataObject) -> str:
    """Replace exactly one character of `value` with a different one from `alphabet`."""
    index = data.draw(st.integers(0, len(value) - 1), label="index")
    replacement = data.draw(st.sampled_from([ch for ch in alphabet if ch != value[index]]), label="char")
    return value[:index] + replacement + value[index + 1:]


# --- normalisation and the error type ---------------------------------------------------------------

def test_normalise_folds_full_width_strips_all_whitespace_and_upper_cases():
    assert normalise(" ５００１０３\u3000１９９０ 0101\t247x\n") == "50010319900101247X"
    assert normalise("９１ａｂ－") == "91AB-"


def test_code_error_names_field_and_rule():
    with pytest.raises(CodeError) as caught:
        parse_id_number("500103199001012471")
    assert caught.value.field == "id-number"
    assert caught.value.rule == "check digit: expected 0, got 1"
    assert str(caught.value) == "id-number: check digit: expected 0, got 1"
    assert isinstance(caught.value, ValueError)


def rejection(parse, value: str) -> CodeError:
    """The CodeError that `parse(value)` must raise."""
    with pytest.raises(CodeError) as caught:
        parse(value)
    return caught.value


@pytest.mark.parametrize("parse, value, field, rule", [
    (parse_id_number, "5001031990010124", "id-number", "must have 18 characters, got 16"),
    (parse_id_number, "50010319900101247A", "id-number", "character 18 must be a digit or X"),
    (parse_id_number, "5001031990010A2470", "id-number", "characters 1–17 must be digits"),
    (parse_id_number, "500103199002302475", "id-number", "birth date (characters 7–14) is not a real date"),
    (parse_region, "510104", "region", "outside Chongqing"),
    (parse_region, "500199", "region", "unknown region code"),
    (parse_region, "5001031", "region", "region code must have 6, 9 or 12 digits"),
    (parse_region, "50010A", "region", "region code must have 6, 9 or 12 digits"),
])
def test_rejections_name_the_field_and_the_rule(parse, value, field, rule):
    error = rejection(parse, value)
    assert (error.field, error.rule) == (field, rule)


# --- 居民身份证号码 ---------------------------------------------------------------------------------

id_regions = st.sampled_from(["500103", "500222", "510212", "110105", "440524"])
births = st.dates(min_value=date(1900, 1, 1), max_value=date(2020, 12, 31))


@settings(max_examples=200)
@given(region=id_regions, birth=births, seq=st.integers(0, 499), sex=st.sampled_from("MF"), data=st.data())
def test_generated_id_numbers_parse_and_any_single_change_is_rejected(region, birth, seq, sex, data):
    number = make_id_number(region, birth, seq, sex)
    parsed = parse_id_number(number)
    assert (parsed.value, parsed.region, parsed.birth_date, parsed.sex) == (number, region, birth, sex)
    with pytest.raises(CodeError):
        parse_id_number(_mutations(number, DIGITS + "X", data))


def test_id_numbers_from_the_standard_including_check_value_10_written_x():
    assert id_number_check_char("11010519491231002") == "X"
    assert parse_id_number("11010519491231002X").sex == "F"
    assert parse_id_number("440524188001010014").birth_date == date(1880, 1, 1)


def test_id_number_accepts_lower_case_x_and_full_width_digits():
    assert parse_id_number("11010519491231002x").value == "11010519491231002X"
    assert parse_id_number("５００１０３１９９００１０１２４７０").value == "500103199001012470"


def test_impossible_birth_date_is_rejected_even_with_a_matching_check_digit():
    first17 = "50010319900230247"  # 30 February
    with pytest.raises(CodeError, match="not a real date"):
        parse_id_number(first17 + id_number_check_char(first17))


# --- 统一社会信用代码 and 组织机构代码 ------------------------------------------------------------------

org8s = st.text(alphabet=CREDIT_ALPHABET, min_size=8, max_size=8)


@settings(max_examples=200)
@given(body=st.sampled_from("159Y"), category=st.sampled_from("123"),
       region=st.sampled_from(["500000", "500103", "440100"]), org8=org8s, data=st.data())
def test_generated_credit_codes_parse_and_any_single_change_is_rejected(body, category, region, org8, data):
    code = make_credit_code(body, category, region, org8)
    parsed = parse_credit_code(code)
    assert parsed.checksum_ok and parsed.region == region and parsed.org_code[:8] == org8
    parse_org_code(parsed.org_code)  # the embedded organisation code carries a valid check too
    with pytest.raises(CodeError):
        parse_credit_code(_mutations(code, CREDIT_ALPHABET, data))


def test_credit_code_remainder_zero_gives_check_zero():
    # Σ weights × values of these 17 characters is a multiple of 31.
    assert credit_code_check_char("91500103662201300") == "0"
    assert parse_credit_code("915001036622013000").checksum_ok


def test_real_credit_code_and_its_parts():
    parsed = parse_credit_code("11440100696927671X")
    assert (parsed.registering_body_name, parsed.category_name, parsed.region) == ("机构编制", "机关", "440100")


def test_credit_code_with_bad_check_is_flagged_when_not_strict_and_rejected_when_strict():
    good = make_credit_code("9", "1", "500103", "MA5U1234")
    bad = good[:17] + ("1" if good[17] != "1" else "2")
    with pytest.raises(CodeError, match="check character: expected"):
        parse_credit_code(bad)
    assert parse_credit_code(bad, strict=False).checksum_ok is False


@pytest.mark.parametrize("letter", list("IOZSV"))
def test_credit_code_alphabet_excludes_confusable_letters(letter):
    with pytest.raises(CodeError, match="outside the alphabet"):
        parse_credit_code("91500103MA5U12" + letter + "345", strict=False)


def test_org_code_check_edge_values():
    # 11 − Σ mod 11: a result of 11 is written 0 and 10 is written X.
    assert org_code_check_char("12345006") == "0"
    assert org_code_check_char("12345001") == "X"
    assert parse_org_code("12345001-X").value == "12345001X"
    assert parse_org_code("12345006 0").formatted == "12345006-0"


@settings(max_examples=100)
@given(org8=st.text(alphabet=DIGITS, min_size=8, max_size=8), data=st.data())
def test_org_codes_round_trip_and_single_digit_changes_are_rejected(org8, data):
    code = org8 + org_code_check_char(org8)
    assert parse_org_code(code[:8] + "-" + code[8]).value == code
    # Digits only: a letter can differ from a digit by 11 and slip through mod 11 (a limit of the standard).
    with pytest.raises(CodeError):
        parse_org_code(_mutations(code, DIGITS, data))


# --- 行政区划 ---------------------------------------------------------------------------------------

def test_chongqing_has_38_county_level_units():
    assert len(CHONGQING_UNITS) == 38 and "500000" not in CHONGQING_UNITS


@pytest.mark.parametrize("value, county, name, level, retired, rolled", [
    ("500000", "500000", "重庆市", "city", None, False),
    ("500103", "500103", "渝中区", "district", None, False),
    ("500240", "500240", "石柱土家族自治县", "county", None, False),
    ("500222", "500110", "綦江区", "district", "500222", False),
    ("500103001", "500103", "渝中区", "district", None, True),
    ("500384001002", "500119", "南川区", "district", "500384", True),
    ("５００２３３", "500233", "忠县", "county", None, False),
])
def test_regions_resolve_to_current_county_codes(value, county, name, level, retired, rolled):
    region = parse_region(value)
    assert (region.county_code, region.name, region.level, region.retired_from, region.rolled_up) == (
        county, name, level, retired, rolled)


def test_every_retired_code_points_to_a_current_unit():
    for retired, successor in RETIRED_CODES.items():
        assert parse_region(retired).county_code == successor in CHONGQING_UNITS


# --- 政务服务事项编码 -------------------------------------------------------------------------------

def test_real_implementation_code_parses():
    item = parse_item_code("11440100696927671X3442111817001")
    assert item.kind == "implementation"
    assert item.implementing_body_credit_code == "11440100696927671X"
    assert (item.level, item.level_name) == ("3", "市级")
    assert (item.basic_code, item.region_prefix, item.item_type, item.main, item.sub) == (
        "442111817001", "44", "21", "11817", "001")
    assert item.item_type_name == "公共服务扩展类型" and item.flags == ()


def test_basic_and_handling_codes():
    basic = parse_item_code("500112345000")
    assert (basic.kind, basic.item_type_name, basic.implementing_body) == ("basic", "行政许可", None)
    assert parse_item_code("50201234500Y").sub == "00Y"
    assert parse_item_code("501512345001").item_type_name == "行政权力扩展类型"
    handling = parse_item_code("11440100696927671X344211181700107")
    assert (handling.kind, handling.handling_suffix, handling.basic_code) == ("handling", "07", "442111817001")


def test_implementing_body_with_failing_checksum_is_flagged_not_rejected():
    item = parse_item_code("11440100696927671Y3442111817001")
    assert item.implementing_body.checksum_ok is False
    assert item.flags == ("implementing body credit code fails its checksum",)


@pytest.mark.parametrize("value, rule_part", [
    ("5001123450", "must have 12 (基本编码), 31 (实施编码) or 33 (业务办理项编码) characters, got 10"),
    ("5001123450X0", "sub item"),
    ("5A0112345000", "region prefix"),
    ("50A112345000", "item type"),
    ("11440100696927671X8442111817001", "level (character 19) must be 1–7"),
    ("11440100696927671X344211181700AB", "must have 12"),
    ("11440100696927671X34421118170010A", "handling suffix"),
    ("1144010069692767IX3442111817001", "implementing body"),
])
def test_item_code_rejections(value, rule_part):
    error = rejection(parse_item_code, value)
    assert error.field == "item-code" and rule_part in error.rule


# --- 电子证照标识 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("identifier", [
    # Identifiers published in public code that integrates with national licence systems.
    "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002.S",
    "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U",
    "1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0",
])
def test_real_licence_identifiers_pass(identifier):
    assert parse_licence_id(identifier).value == identifier


def test_mod_37_36_matches_the_published_iso_7064_examples():
    assert licence_check_char("A12425GABC1234002") == "M"
    assert licence_check_char("B159D8FA01240000") == "K"


@settings(max_examples=150)
@given(serial=st.text(alphabet=ALNUM, min_size=1, max_size=20), version=st.integers(1, 999), data=st.data())
def test_generated_licence_ids_round_trip_and_single_changes_are_rejected(serial, version, data):
    identifier = make_licence_id("11100000000013338W011", "11500000MB1B75017X", serial, version)
    parsed = parse_licence_id(identifier)
    assert (parsed.serial, parsed.version) == (serial, f"{version:03d}")
    body = identifier[len("1.2.156.3005.2."):]
    index = data.draw(st.sampled_from([i for i, ch in enumerate(body) if ch != "."]))
    replacement = data.draw(st.sampled_from([ch for ch in ALNUM if ch != body[index]]))
    with pytest.raises(CodeError):
        parse_licence_id("1.2.156.3005.2." + body[:index] + replacement + body[index + 1:])


def test_licence_id_structure_rejections():
    with pytest.raises(CodeError, match="must start with"):
        parse_licence_id("1.2.156.3005.3.A.B.C.001.X")
    with pytest.raises(CodeError, match="version must have 3 digits"):
        parse_licence_id("1.2.156.3005.2.A.B.C.01.X")


# --- masking ------------------------------------------------------------------------------------------

def test_mask_id_number_and_phone():
    assert mask_id_number("500103199001011234") == "5001**********1234"
    assert mask_phone("13800138000") == "138****8000"


def test_mask_text_masks_every_id_and_phone_but_leaves_other_codes():
    text = ("申请人 50010319900101247x，备用证件 ５００１０３１９９００１０１２４７０，电话 13800138000 / 139-2345-6789；"
            "实施编码 11440100696927671X3442111817001")
    masked = mask_text(text)
    assert "50010319900101247x" not in masked and "5001**********247x" in masked
    assert "５００１" in masked and "１９９０" not in masked
    assert "138****8000" in masked and "139-****-6789" in masked
    assert "11440100696927671X3442111817001" in masked
