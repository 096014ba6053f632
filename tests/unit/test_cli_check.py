"""`tongban check …` through the real command tree: valid codes exit 0 and show their parts, invalid ones
exit 1 with the rule, and ID numbers never appear unmasked."""
from __future__ import annotations

from typer.testing import CliRunner

from tongban.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["check", *args])


def accepted(*args: str) -> str:
    """The output of `tongban check *args`, which must pass (exit 0)."""
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def refused(*args: str) -> str:
    """The output of `tongban check *args`, which must fail the check (exit 1)."""
    result = run(*args)
    assert result.exit_code == 1, result.output
    return result.output


def test_id_number_is_validated_and_shown_masked_only():
    output = accepted("id-number", "11010519491231002x")
    assert "1101**********002X" in output
    assert "11010519491231002" not in output and "19491231" not in output


def test_invalid_id_number_exits_1_with_the_rule_and_without_the_value():
    output = refused("id-number", "110105194912310021")
    assert "invalid id-number: check digit: expected X, got 1" in output
    assert "110105194912310021" not in output


def test_credit_code_parts_and_lenient_flagging():
    output = accepted("credit-code", "11440100696927671X")
    assert "机构编制" in output and "440100" in output and "696927671" in output
    assert "invalid credit-code: check character: expected X, got Y" in refused("credit-code", "11440100696927671Y")
    assert "FAILS CHECKSUM" in accepted("credit-code", "--lenient", "11440100696927671Y")


def test_org_code_with_and_without_hyphen():
    assert "12345001-X" in accepted("org-code", "12345001x")
    assert "invalid org-code: check character: expected X, got 0" in refused("org-code", "12345001-0")


def test_region_resolves_retired_and_town_codes_and_rejects_other_provinces():
    output = accepted("region", "500222003")
    assert "500110" in output and "綦江区" in output and "500222" in output
    assert "invalid region: outside Chongqing" in refused("region", "510104")


def test_item_code_shows_its_parts():
    output = accepted("item-code", "11440100696927671X3442111817001")
    for part in ("implementation", "442111817001", "11817", "11440100696927671X", "3 市级"):
        assert part in output
    assert "invalid item-code: must have 12 (基本编码), 31 (实施编码) or 33" in refused("item-code", "4421118170")


def test_licence_id():
    licence = "1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002."  # and its check character
    assert "2025052201" in accepted("licence-id", licence + "0")
    assert "invalid licence-id: check character: expected 0, got 1" in refused("licence-id", licence + "1")
