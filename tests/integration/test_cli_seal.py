"""`tongban certs init`, `tongban seal sign` and `tongban seal verify` through the real CLI."""
from __future__ import annotations

import datetime as dt

import pytest
from typer.testing import CliRunner

from tongban.cli import app
from tongban.codes import make_credit_code
from tongban.seal.licence import build_licence

runner = CliRunner()


@pytest.fixture(scope="module")
def certs_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs") / "sandbox"
    result = runner.invoke(app, ["certs", "init", "--dir", str(directory), "--key-type", "ec"])
    assert result.exit_code == 0, result.output
    assert "SANDBOX ONLY" in result.output
    return directory


@pytest.fixture
def licence_file(tmp_path):
    issuer = make_credit_code("1", "1", "500000", "00000001")
    path = tmp_path / "licence.xml"
    path.write_bytes(build_licence(
        type_name="营业执照", type_code=issuer + "001", licence_name="营业执照", licence_number="500103000012345",
        issuer="重庆市市场监督管理局", issuer_code=issuer, issue_date=dt.date(2025, 3, 1), holder="重庆山城火锅有限公司",
        holder_code=make_credit_code("9", "1", "500103", "MA5U7R2X"), holder_code_type="001",
        valid_from=dt.date(2025, 3, 1), region="500103", serial="2025030100001"))
    return path


def _sign(certs_dir, licence_file, tmp_path, seal="seal-scjgj"):
    out = tmp_path / "sealed.xml"
    result = runner.invoke(app, ["seal", "sign", str(licence_file), "--cert", str(certs_dir / f"{seal}.pem"),
                                 "--key", str(certs_dir / f"{seal}.key.pem"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_sign_then_verify_round_trip_with_the_default_trust_config(certs_dir, licence_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TONGBAN_CERTS", str(certs_dir))
    sealed = _sign(certs_dir, licence_file, tmp_path)
    result = runner.invoke(app, ["seal", "verify", str(sealed)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("valid seal: ")
    assert "重庆市市场监督管理局 电子印章 (SANDBOX ONLY)" in result.output


def test_tampered_document_exits_1_with_the_reason(certs_dir, licence_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TONGBAN_CERTS", str(certs_dir))
    sealed = _sign(certs_dir, licence_file, tmp_path)
    sealed.write_bytes(sealed.read_bytes().replace("山城".encode(), "山寨".encode()))
    result = runner.invoke(app, ["seal", "verify", str(sealed)])
    assert result.exit_code == 1
    assert result.output.startswith("invalid seal: digest_mismatch: ")


def test_explicit_trust_and_crl(certs_dir, licence_file, tmp_path):
    sealed = _sign(certs_dir, licence_file, tmp_path)
    ok = runner.invoke(app, ["seal", "verify", str(sealed), "--trust", str(certs_dir / "root-ca.pem"),
                             "--crl", str(certs_dir / "root-ca.crl.pem")])
    assert ok.exit_code == 0, ok.output
    stranger = runner.invoke(app, ["seal", "verify", str(sealed), "--trust", str(certs_dir / "untrusted-ca.pem")])
    assert stranger.exit_code == 1
    assert "invalid seal: untrusted_issuer: " in stranger.output


def test_unsigned_document_is_missing(certs_dir, licence_file):
    result = runner.invoke(app, ["seal", "verify", str(licence_file), "--trust", str(certs_dir / "root-ca.pem")])
    assert result.exit_code == 1
    assert "invalid seal: missing: " in result.output


def test_sign_to_stdout(certs_dir, licence_file):
    result = runner.invoke(app, ["seal", "sign", str(licence_file), "--cert", str(certs_dir / "seal-gaj.pem"),
                                 "--key", str(certs_dir / "seal-gaj.key.pem")])
    assert result.exit_code == 0
    assert b"<ds:Signature" in result.stdout_bytes


def test_init_refuses_to_overwrite_and_rejects_unknown_key_types(certs_dir, tmp_path):
    again = runner.invoke(app, ["certs", "init", "--dir", str(certs_dir)])
    assert again.exit_code == 1
    assert "--force" in again.output
    bad = runner.invoke(app, ["certs", "init", "--dir", str(tmp_path / "x"), "--key-type", "dsa"])
    assert bad.exit_code == 2


def test_missing_trust_config_is_a_clear_error(licence_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TONGBAN_CERTS", str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["seal", "verify", str(licence_file)])
    assert result.exit_code == 2
    assert "tongban certs init" in result.output
