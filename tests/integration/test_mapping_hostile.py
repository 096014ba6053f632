"""`tongban mapping check` is fed the classic attacks: each is refused within a second with a clear error, no file is
read, no request is made, memory stays bounded."""
from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tongban.cli import app

REPO = Path(__file__).resolve().parents[2]
SAMR = REPO / "mappings" / "cq-samr-rest.yaml"
SECRET = "TOP-SECRET-CONTENT-42"


@pytest.fixture
def listener():
    """A local HTTP server that counts requests: an attack that reaches the network shows up here."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<!ENTITY x 'pwned'>")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


def _check(*args):
    return CliRunner().invoke(app, ["mapping", "check", *map(str, args)])


ATTACKS = {
    "billion-laughs": '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
                      '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
                      '<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">]>'
                      '<r><rec><ywh>&f;</ywh></rec></r>',
    "quadratic-blowup": '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "' + "x" * 50000 + '">]><r><rec><ywh>'
                        + "&a;" * 50000 + '</ywh></rec></r>',
    "external-file": '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY s SYSTEM "file://{secret}">]><r><rec><ywh>&s;</ywh></rec></r>',
    "external-url": '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY s SYSTEM "{url}/entity">]><r><rec><ywh>&s;</ywh></rec></r>',
    "external-dtd": '<?xml version="1.0"?><!DOCTYPE r SYSTEM "{url}/evil.dtd"><r><rec><ywh>x</ywh></rec></r>',
    "malformed": '<?xml version="1.0"?><r><rec><ywh>SB1</ywh></rec>',
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_hostile_xml_samples_are_refused(attack, tmp_path, listener):
    url, hits = listener
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET, encoding="utf-8")
    sample = tmp_path / f"{attack}.xml"
    sample.write_text(ATTACKS[attack].format(secret=secret, url=url), encoding="utf-8")
    result = _check(SAMR, "--sample", sample, "--record-tag", "rec")
    assert result.exit_code == 1 and "cannot read sample" in result.output
    # Refused from its declarations, before any entity is expanded or fetched (not by a limit met while expanding).
    refusal = "not well-formed XML" if attack == "malformed" else "XML declares a DOCTYPE/ENTITY"
    assert refusal in result.output
    assert SECRET not in result.output and hits == []


def test_nul_bytes_and_wrong_encoding_in_json_samples(tmp_path):
    sample = tmp_path / "nul.json"
    sample.write_bytes(b'[{"ywh": "SB1\x00"}]')
    result = _check(SAMR, "--sample", sample)
    assert result.exit_code == 1 and "NUL bytes" in result.output
    gbk = tmp_path / "gbk.json"
    gbk.write_bytes('[{"sqrxm": "张三"}]'.encode("gbk"))
    result = _check(SAMR, "--sample", gbk)
    assert result.exit_code == 1 and "cannot read sample" in result.output


def test_yaml_alias_bomb_in_a_mapping_file_is_refused(tmp_path):
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        levels.append(f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("system: x\n" + "\n".join(levels) + "\n", encoding="utf-8")
    result = _check(bomb)
    assert result.exit_code == 1 and "aliases" in result.output and "bomb.yaml:3" in result.output


def test_an_oversized_mapping_file_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("system: x\n# " + "x" * (2 * 1024 * 1024) + "\n", encoding="utf-8")
    result = _check(big)
    assert result.exit_code == 1 and "larger than" in result.output


def test_a_good_xml_sample_maps(tmp_path):
    sample = tmp_path / "ok.xml"
    sample.write_text("<cases><rec><ywh>SB1</ywh><sxbm>SX-0001</sxbm><sqrxm>张三</sqrxm><zjlx>SFZ</zjlx>"
                      "<zjhm>11010519491231002X</zjhm><xzqh>500103</xzqh><sqsj>2024-03-01 09:30:00</sqsj>"
                      "<bjlx>1</bjlx><gxsj>2024-03-01 09:30:00</gxsj></rec></cases>", encoding="utf-8")
    result = _check(SAMR, "--sample", sample)
    assert result.exit_code == 0, result.output
    assert "1 records: 1 mapped, 0 with errors" in result.output
