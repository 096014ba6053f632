"""国密 primitives and the SM2 sandbox PKI: the standards' published vectors, key and certificate encodings that
other implementations (OpenSSL 3) read, and the CA's extensions (issue 19)."""
from __future__ import annotations

import shutil
import subprocess

import gmalglib
import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import pem

from tongban.seal.ca import init_sandbox_ca
from tongban.seal.sm2 import primitives as sm2
from tongban.seal.sm2.ca import load_certificate
from tongban.seal.sm2.trust import signed_by

# GM/T 0003.5-2012 (GB/T 32918.5-2017) Annex A: the signature example on the recommended curve.
SK = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
PK = bytes.fromhex("04"
                   "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
                   "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13")
K = bytes.fromhex("59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21")
R = int("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3", 16)
S = int("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA", 16)
Z = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"
UID = b"1234567812345678"


def test_sm3_published_vectors():  # GB/T 32905-2016 Annex A
    assert sm2.sm3(b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm2.sm3(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def test_sm2_signature_example_of_gmt_0003_with_its_fixed_key_nonce_and_user_id():
    assert sm2.public_key_of(SK) == PK
    assert gmalglib.sm2_get_entity_info(PK, UID).hex().upper() == Z  # Z_A of the example
    signature = sm2.sign(SK, b"message digest", uid=UID, k=K)
    from asn1crypto.algos import DSASignature

    assert DSASignature.load(signature).native == {"r": R, "s": S}
    assert sm2.verify(PK, b"message digest", signature, uid=UID)
    assert not sm2.verify(PK, b"message digesT", signature, uid=UID)
    assert not sm2.verify(PK, b"message digest", signature, uid=b"another user id")


def test_random_nonces_give_different_signatures_that_both_verify():
    sk, pk = sm2.generate_keypair()
    one, two = sm2.sign(sk, b"x"), sm2.sign(sk, b"x")
    assert one != two and sm2.verify(pk, b"x", one) and sm2.verify(pk, b"x", two)


def test_a_signature_that_is_not_der_is_refused_with_a_reason():
    with pytest.raises(sm2.SM2Error, match="DER SEQUENCE"):
        sm2.verify(PK, b"message digest", b"\x00" * 64)


def test_private_key_pem_round_trips_and_refuses_other_curves():
    text = sm2.private_key_pem(SK)
    assert sm2.load_private_key_pem(b"# SANDBOX KEY comment\n" + text) == SK
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(sm2.SM2Error, match="not an SM2"):
        sm2.load_private_key_pem(p256)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sm2pki")
    init_sandbox_ca(directory, sm2=True)
    return directory


def test_sm2_ca_and_seal_certificates_carry_the_required_extensions(pki):
    ca, seal = load_certificate(pki / "sm2-root-ca.pem"), load_certificate(pki / "sm2-seal-scjgj.pem")
    assert ca["signature_algorithm"]["algorithm"].dotted == sm2.SM2_SM3_OID
    assert ca.basic_constraints_value["ca"].native is True and ca.critical_extensions >= {"basic_constraints"}
    assert set(ca.key_usage_value.native) == {"key_cert_sign", "crl_sign"}
    assert seal.basic_constraints_value["ca"].native is False
    assert "digital_signature" in seal.key_usage_value.native
    ca_key = sm2.public_key_from_info(ca["tbs_certificate"]["subject_public_key_info"])
    assert signed_by(seal, ca_key, "tbs_certificate", "signature_value")
    assert "SANDBOX ONLY" in seal.subject.native["common_name"]
    assert (pki / "sm2-seal-scjgj.key.pem").read_text().startswith("# SANDBOX KEY")
    listed = asn1_crl.CertificateList.load(pem.unarmor((pki / "sm2-root-ca.crl.pem").read_bytes())[2])
    assert signed_by(listed, ca_key, "tbs_cert_list", "signature")
    untrusted = load_certificate(pki / "sm2-untrusted-signer.pem")
    assert not signed_by(untrusted, ca_key, "tbs_certificate", "signature_value")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_reads_the_sm2_key_and_verifies_the_seal_certificate_chain(pki):
    key = subprocess.run(["openssl", "pkey", "-in", str(pki / "sm2-seal-scjgj.key.pem"), "-noout", "-text"],
                         capture_output=True, text=True)
    assert key.returncode == 0 and "SM2" in key.stdout, key.stderr
    ok = subprocess.run(["openssl", "verify", "-vfyopt", "distid:1234567812345678", "-CAfile",
                         str(pki / "sm2-root-ca.pem"), str(pki / "sm2-seal-scjgj.pem")], capture_output=True, text=True)
    assert ok.returncode == 0 and ": OK" in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run(["openssl", "verify", "-vfyopt", "distid:1234567812345678", "-CAfile",
                          str(pki / "sm2-root-ca.pem"), str(pki / "sm2-untrusted-signer.pem")], capture_output=True)
    assert bad.returncode != 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_verifies_the_sm2_signature_of_a_tongban_seal(pki, tmp_path):
    from tongban.seal.sm2.signer import SM2Signer
    from tongban.seal.sm2.structures import SealedDocument

    container = SealedDocument.load(
        SM2Signer(pki / "sm2-seal-scjgj.pem", pki / "sm2-seal-scjgj.key.pem").sign(b"<Licence>1</Licence>"))
    (tmp_path / "tbs.der").write_bytes(container["signature"]["toSign"].dump())
    (tmp_path / "sig.der").write_bytes(container["signature"]["signature"].native)
    public = subprocess.run(["openssl", "x509", "-in", str(pki / "sm2-seal-scjgj.pem"), "-pubkey", "-noout"],
                            capture_output=True, check=True).stdout
    (tmp_path / "pub.pem").write_bytes(public)
    command = ["openssl", "dgst", "-sm3", "-verify", str(tmp_path / "pub.pem"), "-sigopt",
               "distid:1234567812345678", "-signature", str(tmp_path / "sig.der"), str(tmp_path / "tbs.der")]
    good = subprocess.run(command, capture_output=True, text=True)
    assert good.returncode == 0 and "Verified OK" in good.stdout, good.stdout + good.stderr
    (tmp_path / "tbs.der").write_bytes(container["signature"]["toSign"].dump() + b"\x00")
    assert subprocess.run(command, capture_output=True).returncode != 0
