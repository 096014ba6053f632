"""`tongban check …` through the real command tree: valid codes exit 0 and show their parts, invalid ones
exit 1 with the rule, and ID numbers never appear unmasked."""
from __future__ import annotations

from typer.testing import CliRunner

from tongban.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["check", *args])


def test_id_number_is_validated_and_shown_masked_only():
    result = run("id-number", "11010519491231002x")
    assert result.exit_code == 0
    assert "1101**********002X" in result.output
    assert "11010519491231002" not in result.output and "19491231" not in result.output


def test_invalid_id_number_exits_1_with_the_rule_and_without_the_value():
    result = run("id-number", "110105194912310021")
    assert result.exit_code == 1
    assert "invalid id-number: check digit: expected X, got 1" in result.output
    assert "110105194912310021" not in result.output


def test_credit_code_parts_and_lenient_flagging():
    result = run("credit-code", "11440100696927671X")
    assert result.exit_code == 0
    assert "机构编制" in result.output and "440100" in result.output and "696927671" in result.output
    bad = run("credit-code", "11440100696927671Y")
    assert bad.exit_code == 1 and "invalid credit-code: check character: expected X, got Y" in bad.output
    lenient = run("credit-code", "--lenient", "11440100696927671Y")
    assert lenient.exit_code == 0 and "FAILS CHECKSUM" in lenient.output


def test_org_code_with_and_without_hyphen():
    assert "12345001-X" in run("org-code", "12345001x").output
    bad = run("org-code", "12345001-0")
    assert bad.exit_code == 1 and "invalid org-code: check character: expected X, got 0" in bad.output


def test_region_resolves_retired_and_town_codes_and_rejects_other_provinces():
    result = run("region", "500222003")
    assert result.exit_code == 0
    assert "500110" in result.output and "綦江区" in result.output and "500222" in result.output
    outside = run("region", "510104")
    assert outside.exit_code == 1 and "invalid region: outside Chongqing" in outside.output


def test_item_code_shows_its_parts():
    result = run("item-code", "11440100696927671X3442111817001")
    assert result.exit_code == 0
    for part in ("implementation", "442111817001", "11817", "11440100696927671X", "3 市级"):
        assert part in result.output
    short = run("item-code", "4421118170")
    assert short.exit_code == 1 and "invalid item-code: must have 12 (基本编码), 31 (实施编码) or 33" in short.output


def test_licence_id():
    good = run("licence-id", "1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0")
    assert good.exit_code == 0 and "2025052201" in good.output
    bad = run("licence-id", "1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.1")
    assert bad.exit_code == 1 and "invalid licence-id: check character: expected 0, got 1" in bad.output
