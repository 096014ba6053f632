"""国密 SM2 seals (GB/T 38540) end to end: interop with gmalglib used directly, every bad-seal kind refused with its
reason, and `tongban seal sign --alg sm2` / `tongban seal verify` through the real CLI (issue 19)."""
from __future__ import annotations

import datetime as dt
import json

import gmalglib
import pytest
from asn1crypto.algos import DSASignature
from gmalglib.sm2 import SM2
from typer.testing import CliRunner

from sandbox.sealed_dept import DEPARTMENT_SLUG, _licence, ensure_certs
from sandbox.sealed_sm2 import SM2_BAD_KINDS, seal_bad
from tongban.cli import app
from tongban.seal import TrustStore, verify_sealed
from tongban.seal.sm2 import primitives as sm2
from tongban.seal.sm2.ca import load_certificate
from tongban.seal.sm2.signer import SM2Signer
from tongban.seal.sm2.structures import SealedDocument, SESSeal, SESSealSignedPart, SESSignature, TBSSign

runner = CliRunner()
LICENCE = _licence(7)
SM2_OID = "1.2.156.10197.1.501"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return ensure_certs(tmp_path_factory.mktemp("home") / "certs")


@pytest.fixture(scope="module")
def bad_files(certs):
    made = {kind: seal_bad(kind, LICENCE, certs, DEPARTMENT_SLUG, "t",
                           tamper=("107万元".encode(), "9999万元".encode())) for kind in SM2_BAD_KINDS}
    return made


@pytest.fixture(scope="module")
def trust(certs, bad_files):  # after bad_files: the revoked sample rewrote the CRL
    return TrustStore.load(certs / "trust.yaml")


def _sign_with_gmalglib(sk: bytes, data: bytes) -> bytes:
    raw = gmalglib.sm2_sign(sk, data, b"1234567812345678")  # the library's own procedural API, as in its README
    return DSASignature({"r": int.from_bytes(raw[:32], "big"), "s": int.from_bytes(raw[32:], "big")}).dump()


def test_a_seal_made_with_gmalglib_directly_verifies_in_tongban(certs, trust):
    cert = load_certificate(certs / "sm2-seal-gaj.pem")
    sk = sm2.load_private_key_pem((certs / "sm2-seal-gaj.key.pem").read_bytes())
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    info = {"header": {"ID": "ES", "version": 4, "Vid": "gmalglib-test"}, "esID": "500000-TEST-1",
            "property": {"type": 1, "name": "重庆市公安局", "certListType": 1, "certList": [cert.dump()],
                         "createDate": now, "validStart": now - dt.timedelta(days=1),
                         "validEnd": now + dt.timedelta(days=30)},
            "picture": {"type": "PNG", "data": b"\x89PNG\r\n\x1a\n", "width": 40, "height": 40}}
    signed_part = SESSealSignedPart({"eSealInfo": info, "cert": cert.dump(), "signAlgID": SM2_OID}).dump()
    seal = SESSeal({"eSealInfo": info, "cert": cert.dump(), "signAlgID": SM2_OID,
                    "signedValue": _sign_with_gmalglib(sk, signed_part)})
    to_sign = TBSSign({"version": 4, "eseal": seal, "timeInfo": now, "dataHash": gmalglib.sm3_digest(LICENCE),
                       "propertyInfo": "application/xml"})
    signature = SESSignature({"toSign": to_sign, "cert": cert.dump(), "signatureAlgID": SM2_OID,
                              "signature": _sign_with_gmalglib(sk, to_sign.dump())})
    container = SealedDocument({"format": "tongban-sm2-sealed/1", "mediaType": "application/xml",
                                "document": LICENCE, "signature": signature}).dump()
    result = verify_sealed(container, trust)
    assert result.ok, result.message
    assert (result.kind, result.signed_data, result.signing_time) == ("sm2", LICENCE, now)
    assert "重庆市公安局" in result.signer_subject


def test_a_seal_made_by_tongban_verifies_with_gmalglib_directly(certs):
    sealed = SM2Signer(certs / "sm2-seal-scjgj.pem", certs / "sm2-seal-scjgj.key.pem").sign(LICENCE)
    container = SealedDocument.load(sealed)
    signature = container["signature"]
    to_sign = signature["toSign"]
    assert container["document"].native == LICENCE
    assert signature["signatureAlgID"].dotted == SM2_OID
    assert bytes(to_sign["dataHash"].native) == gmalglib.sm3_digest(LICENCE)
    cert = load_certificate(certs / "sm2-seal-scjgj.pem")
    assert signature["cert"].native == cert.dump()
    pk = bytes(cert["tbs_certificate"]["subject_public_key_info"]["public_key"])
    rs = DSASignature.load(signature["signature"].native).native
    raw = rs["r"].to_bytes(32, "big") + rs["s"].to_bytes(32, "big")
    verifier = SM2(pk=pk, uid=b"1234567812345678")  # gmalglib's object API (its wrapped sm2_verify takes no sig)
    assert verifier.verify(to_sign.dump(), raw)
    assert not verifier.verify(to_sign.dump() + b"x", raw)
    seal = to_sign["eseal"]
    rs = DSASignature.load(seal["signedValue"].native).native
    assert verifier.verify(seal.signed_part(), rs["r"].to_bytes(32, "big") + rs["s"].to_bytes(32, "big"))


@pytest.mark.parametrize("kind", sorted(SM2_BAD_KINDS))
def test_every_bad_sm2_seal_kind_is_refused_with_its_reason(kind, bad_files, trust):
    result = verify_sealed(bad_files[kind], trust)
    assert not result.ok and result.reason == SM2_BAD_KINDS[kind], result.message
    assert result.kind == "sm2" and result.element is None


@pytest.mark.parametrize("edit", ["signing time", "seal name"])
def test_a_changed_signing_time_or_seal_name_breaks_the_signature(edit, certs, trust):
    container = SealedDocument.load(
        SM2Signer(certs / "sm2-seal-scjgj.pem", certs / "sm2-seal-scjgj.key.pem").sign(LICENCE))
    to_sign = container["signature"]["toSign"]
    if edit == "signing time":
        to_sign["timeInfo"] = to_sign["timeInfo"].native - dt.timedelta(days=3)   # backdated
    else:  # the signer renames the seal it was issued and re-signs: the seal maker's signature no longer holds
        to_sign["eseal"]["eSealInfo"]["property"]["name"] = "重庆市公安局"
        key = sm2.load_private_key_pem((certs / "sm2-seal-scjgj.key.pem").read_bytes())
        container["signature"]["signature"] = sm2.sign(key, to_sign.dump(force=True))
    result = verify_sealed(container.dump(force=True), trust)
    assert result.reason == "digest_mismatch", result.message
    assert ("signer's" if edit == "signing time" else "seal maker's") in result.message


@pytest.mark.parametrize("data", [b"\x30", b"\x30\x03\x02\x01\x01", b"\x30\x80" + b"\x00" * 8])
def test_hostile_der_is_refused_as_bad_structure_not_a_crash(data, trust):
    result = verify_sealed(data, trust)
    assert (result.ok, result.reason) == (False, "bad_seal_structure"), result.message


def test_a_truncated_seal_is_refused_as_bad_structure(certs, trust):
    sealed = SM2Signer(certs / "sm2-seal-scjgj.pem", certs / "sm2-seal-scjgj.key.pem").sign(LICENCE)
    assert verify_sealed(sealed[:-10], trust).reason == "bad_seal_structure"


# ------------------------------------------------------------------------------------------ the CLI


def _cli(*args, certs):
    return runner.invoke(app, list(args), env={"TONGBAN_CERTS": str(certs)})


def _stdout(result) -> str:
    return "\n".join(line for line in result.output.splitlines() if "sandbox mode" not in line)


def test_cli_signs_with_sm2_and_verifies_one_file_with_nothing_else(certs, tmp_path, trust):
    source, out = tmp_path / "licence.xml", tmp_path / "licence.sm2.der"
    source.write_bytes(LICENCE)
    signed = _cli("seal", "sign", str(source), "--alg", "sm2", "--cert", str(certs / "sm2-seal-scjgj.pem"),
                  "--key", str(certs / "sm2-seal-scjgj.key.pem"), "-o", str(out), certs=certs)
    assert signed.exit_code == 0, signed.output
    checked = _cli("seal", "verify", str(out), certs=certs)
    assert checked.exit_code == 0 and _stdout(checked).startswith("valid seal: CN=重庆市市场监督管理局"), checked.output
    as_json = _cli("seal", "verify", str(out), "--json", certs=certs)
    report = json.loads(_stdout(as_json))
    assert (as_json.exit_code, report["ok"], report["reason"], report["kind"]) == (0, True, "valid", "sm2")
    explicit = _cli("seal", "verify", str(out), "--trust", str(certs / "sm2-root-ca.pem"), "--crl",
                    str(certs / "sm2-root-ca.crl.pem"), certs=certs)
    assert explicit.exit_code == 0, explicit.output


def test_cli_verify_recognises_xades_beside_sm2(certs, tmp_path):
    source, out = tmp_path / "licence.xml", tmp_path / "sealed.xml"
    source.write_bytes(LICENCE)
    assert _cli("seal", "sign", str(source), "--cert", str(certs / "seal-scjgj.pem"), "--key",
                str(certs / "seal-scjgj.key.pem"), "-o", str(out), certs=certs).exit_code == 0
    report = json.loads(_stdout(_cli("seal", "verify", str(out), "--json", certs=certs)))
    assert (report["ok"], report["kind"]) == (True, "xades")


@pytest.mark.parametrize("kind", sorted(SM2_BAD_KINDS))
def test_cli_verify_exits_1_naming_the_reason(kind, certs, bad_files, trust, tmp_path):
    path = tmp_path / f"{kind}.der"
    path.write_bytes(bad_files[kind])
    result = _cli("seal", "verify", str(path), certs=certs)
    assert result.exit_code == 1 and _stdout(result).startswith(f"invalid seal: {SM2_BAD_KINDS[kind]}: ")
    report = json.loads(_stdout(_cli("seal", "verify", str(path), "--json", certs=certs)))
    assert (report["ok"], report["reason"]) == (False, SM2_BAD_KINDS[kind])


def test_cli_refuses_an_sm2_seal_when_the_trust_store_has_no_sm2_ca(certs, tmp_path):
    path = tmp_path / "ok.der"
    path.write_bytes(SM2Signer(certs / "sm2-seal-scjgj.pem", certs / "sm2-seal-scjgj.key.pem").sign(LICENCE))
    result = _cli("seal", "verify", str(path), "--trust", str(certs / "root-ca.pem"), "--crl",
                  str(certs / "root-ca.crl.pem"), certs=certs)
    assert result.exit_code == 1 and "untrusted_issuer" in result.output and "sm2_ca" in result.output


def test_cli_sign_refuses_an_ecdsa_key_for_sm2_and_an_unknown_alg(certs, tmp_path):
    source = tmp_path / "licence.xml"
    source.write_bytes(LICENCE)
    wrong = _cli("seal", "sign", str(source), "--alg", "sm2", "--cert", str(certs / "seal-scjgj.pem"), "--key",
                 str(certs / "seal-scjgj.key.pem"), "-o", str(tmp_path / "x"), certs=certs)
    assert wrong.exit_code == 1 and "not an SM2" in wrong.output and not (tmp_path / "x").exists()
    unknown = _cli("seal", "sign", str(source), "--alg", "rsa", "--cert", "c", "--key", "k", certs=certs)
    assert unknown.exit_code != 0 and "--alg must be xades or sm2" in unknown.output


def test_certs_init_sm2_adds_the_sm2_pki_beside_an_existing_one(tmp_path):
    directory = tmp_path / "certs"
    assert runner.invoke(app, ["certs", "init", "--dir", str(directory)]).exit_code == 0
    assert not (directory / "sm2-root-ca.pem").exists()
    added = runner.invoke(app, ["certs", "init", "--dir", str(directory), "--sm2", "--json"])
    assert added.exit_code == 0, added.output
    report = json.loads(_stdout(added))
    assert report["sandbox_only"] is True and set(report["sm2"]["departments"]) == {"scjgj", "gaj", "zfcxjw"}
    assert "sm2_ca: [sm2-root-ca.pem]" in (directory / "trust.yaml").read_text()
    again = runner.invoke(app, ["certs", "init", "--dir", str(directory), "--sm2"])
    assert again.exit_code != 0 and "--force" in again.output


def test_no_single_byte_change_anywhere_in_an_sm2_seal_passes_or_crashes(certs, trust):
    sealed = SM2Signer(certs / "sm2-seal-scjgj.pem", certs / "sm2-seal-scjgj.key.pem").sign(LICENCE)
    reasons = set()
    for position in range(len(sealed)):
        changed = bytearray(sealed)
        changed[position] ^= 0x01
        result = verify_sealed(bytes(changed), trust)  # never raises
        assert not result.ok, f"byte {position} changed and the seal still verified"
        reasons.add(result.reason)
    assert reasons <= {"bad_seal_structure", "digest_mismatch", "untrusted_issuer", "malformed", "missing",
                       "expired", "not_yet_valid", "key_usage"}, reasons


def test_cli_signs_with_a_seal_a_maker_issued_and_refuses_unsafe_xml(certs, tmp_path, trust):
    from tongban.seal.sm2.signer import make_seal

    maker_cert = load_certificate(certs / "sm2-seal-gaj.pem")  # 制章人: another trusted SM2 certificate
    maker_key = sm2.load_private_key_pem((certs / "sm2-seal-gaj.key.pem").read_bytes())
    seal = make_seal(maker_cert, maker_key, [load_certificate(certs / "sm2-seal-scjgj.pem")],
                     name="重庆市市场监督管理局", es_id="5000000000001")
    (tmp_path / "seal.der").write_bytes(seal.dump())
    source, out = tmp_path / "licence.xml", tmp_path / "out.der"
    source.write_bytes(LICENCE)
    args = ["seal", "sign", str(source), "--alg", "sm2", "--cert", str(certs / "sm2-seal-scjgj.pem"), "--key",
            str(certs / "sm2-seal-scjgj.key.pem"), "--seal", str(tmp_path / "seal.der"), "-o", str(out)]
    assert _cli(*args, certs=certs).exit_code == 0
    result = verify_sealed(out.read_bytes(), trust)
    assert result.ok, result.message
    assert SealedDocument.load(out.read_bytes())["signature"]["toSign"]["eseal"].dump() == seal.dump()

    source.write_bytes(b'<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>')
    refused = _cli(*args, certs=certs)
    assert refused.exit_code == 1 and "cannot seal" in refused.output


def test_cli_refuses_a_xades_seal_when_only_sm2_cas_are_named(certs, tmp_path):
    source, out = tmp_path / "licence.xml", tmp_path / "sealed.xml"
    source.write_bytes(LICENCE)
    assert _cli("seal", "sign", str(source), "--cert", str(certs / "seal-scjgj.pem"), "--key",
                str(certs / "seal-scjgj.key.pem"), "-o", str(out), certs=certs).exit_code == 0
    result = _cli("seal", "verify", str(out), "--trust", str(certs / "sm2-root-ca.pem"), certs=certs)
    assert result.exit_code == 1 and "untrusted_issuer" in result.output and "RSA/ECDSA" in result.output
