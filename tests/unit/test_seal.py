"""Sealed-document exchange: sandbox CA, XAdES seals, verification reasons, hostile XML, licences, receipts."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading

import pytest
from lxml import etree
from signxml.xades import XAdESVerifier

from tongban.codes import make_credit_code, make_id_number
from tongban.seal import TrustConfigError, TrustStore, XadesSigner, build_receipt, verify_receipt, verify_sealed
from tongban.seal.ca import SANDBOX_KEY_MARKER, init_sandbox_ca, load_private_key
from tongban.seal.licence import LICENCE_NS, LicenceError, build_licence, parse_licence
from tongban.seal.signer import Signer, SigningError

DS = "{http://www.w3.org/2000/09/xmldsig#}"
SIGNED_AT = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.timezone.utc)
ISSUER_CODE = make_credit_code("1", "1", "500000", "00000001")
HOLDER_CODE = make_credit_code("9", "1", "500103", "MA5U7R2X")


@pytest.fixture(scope="module", params=["ec", "rsa"])
def pki(request, tmp_path_factory):
    return init_sandbox_ca(tmp_path_factory.mktemp(f"pki-{request.param}"),
                           [("scjgj", "重庆市市场监督管理局"), ("gaj", "重庆市公安局")], key_type=request.param)


@pytest.fixture(scope="module")
def trust(pki):
    return TrustStore.load(pki["trust_config"])


@pytest.fixture(scope="module")
def signer(pki):
    seal = pki["departments"]["scjgj"]
    return XadesSigner(seal.cert_path, seal.key_path)


def licence_xml(holder: str = "重庆山城火锅有限公司", **overrides) -> bytes:
    fields = dict(
        type_name="营业执照", type_code=ISSUER_CODE + "001", licence_name="营业执照", licence_number="500103000012345",
        issuer="重庆市市场监督管理局", issuer_code=ISSUER_CODE, issue_date=dt.date(2025, 3, 1), holder=holder,
        holder_code=HOLDER_CODE, holder_code_type="001", valid_from=dt.date(2025, 3, 1), region="500103",
        serial="2025030100001", face_data={"注册资本": "100万元"},
    )
    fields.update(overrides)
    return build_licence(**fields)


@pytest.fixture(scope="module")
def sealed(signer):
    return signer.sign(licence_xml(), signing_time=SIGNED_AT)


# ------------------------------------------------------------------ the sandbox CA


def test_sandbox_keys_are_marked_and_still_load(pki):
    seal = pki["departments"]["gaj"]
    assert seal.key_path.read_text(encoding="utf-8").splitlines()[0] == SANDBOX_KEY_MARKER
    assert load_private_key(seal.key_path).public_key().public_numbers() == \
        seal.certificate.public_key().public_numbers()
    assert "SANDBOX ONLY" in pki["ca"].certificate.subject.rfc4514_string()
    assert "重庆市公安局 电子印章 (SANDBOX ONLY)" in seal.certificate.subject.rfc4514_string()


def test_signer_is_pluggable_and_refuses_a_key_that_is_not_the_certificates(pki, signer):
    assert isinstance(signer, Signer)
    assert signer.algorithm in ("ecdsa-sha256", "rsa-sha256")
    seal, other = pki["departments"]["scjgj"], pki["departments"]["gaj"]
    with pytest.raises(SigningError, match="is not the key of certificate"):
        XadesSigner(seal.cert_path, other.key_path)


# ------------------------------------------------------------------ valid seals


def test_valid_sealed_licence_verifies_and_reads_back(sealed, trust):
    result = verify_sealed(sealed, trust)
    assert result.ok and result.reason == "valid", result.message
    assert "重庆市市场监督管理局 电子印章 (SANDBOX ONLY)" in result.signer_subject
    assert result.signing_time == SIGNED_AT
    assert result.digest == hashlib.sha256(result.signed_data).hexdigest()
    assert result.document_digest == hashlib.sha256(sealed).hexdigest()
    licence = parse_licence(result.element)
    assert licence["holder"] == "重庆山城火锅有限公司"
    assert licence["holder_code_type"] == "001"
    assert licence["identifier"].startswith("1.2.156.3005.2." + ISSUER_CODE + "001.")
    assert licence["face_data"] == {"注册资本": "100万元"}
    assert licence["valid_until"] is None  # 长期


def test_verified_element_excludes_the_signature(sealed, trust):
    element = verify_sealed(sealed, trust).element
    assert element.find(f"{DS}Signature") is None


# ------------------------------------------------------------------ tampering and wrapping


def test_tampered_document_is_a_digest_mismatch(sealed, trust):
    tampered = sealed.replace("重庆山城火锅有限公司".encode(), "重庆假冒火锅有限公司".encode())
    result = verify_sealed(tampered, trust)
    assert not result.ok and result.reason == "digest_mismatch"
    assert result.element is None


def test_tampered_signing_time_is_never_valid(sealed, trust):
    tampered = sealed.replace(b"2025-03-01T09:30:00+00:00", b"2024-01-01T00:00:00+00:00")
    assert tampered != sealed
    assert verify_sealed(tampered, trust).reason == "digest_mismatch"


def test_signature_wrapping_is_detected(sealed, trust):
    original = etree.fromstring(sealed)
    # The attacker keeps the genuinely sealed licence inside a wrapper and puts forged data at the root, hoping a
    # verifier checks the signature's own subtree and then reads the root.
    assert XAdESVerifier().verify(etree.tostring(original), ca_pem_file=None, expect_config=_any_ca_config(),
                                  x509_cert=_cert_of(original))  # the inner seal is genuine on its own
    forged = etree.fromstring(licence_xml(holder="冒名顶替的公司"))
    wrapper = etree.SubElement(forged, f"{{{LICENCE_NS}}}Attachment")
    wrapper.append(original)
    result = verify_sealed(etree.tostring(forged), trust)
    assert not result.ok and result.reason == "wrapped"


def test_duplicate_signature_is_wrapped(sealed, trust):
    root = etree.fromstring(sealed)
    root.append(etree.fromstring(etree.tostring(root.find(f"{DS}Signature"))))
    assert verify_sealed(etree.tostring(root), trust).reason in ("wrapped",)


def test_extra_unsigned_element_at_the_root_is_never_valid(sealed, trust):
    root = etree.fromstring(sealed)
    extra = etree.Element(f"{{{LICENCE_NS}}}Holder")
    extra.text = "冒名顶替的公司"
    root.insert(0, extra)
    result = verify_sealed(etree.tostring(root), trust)
    assert not result.ok and result.reason in ("digest_mismatch", "wrapped")


def _cert_of(root):
    from cryptography import x509
    from signxml.util import add_pem_header

    text = root.find(f"{DS}Signature/{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate").text
    return x509.load_pem_x509_certificate(add_pem_header(text))


def _any_ca_config():
    from signxml.xades import XAdESSignatureConfiguration

    return XAdESSignatureConfiguration()


# ------------------------------------------------------------------ certificate problems


def test_untrusted_ca_is_rejected(pki, trust):
    stranger = pki["untrusted_signer"]
    sealed = XadesSigner(stranger.cert_path, stranger.key_path).sign(licence_xml())
    result = verify_sealed(sealed, trust)
    assert not result.ok and result.reason == "untrusted_issuer"


def test_expired_certificate_is_rejected(pki, trust):
    now = dt.datetime.now(dt.timezone.utc)
    old = pki["ca"].issue_certificate("seal-expired", "过期印章 (SANDBOX ONLY)", "重庆市市场监督管理局",
                                      key_type="ec", not_before=now - dt.timedelta(days=400),
                                      not_after=now - dt.timedelta(days=30))
    sealed = XadesSigner(old.cert_path, old.key_path).sign(licence_xml(), signing_time=now - dt.timedelta(days=60))
    result = verify_sealed(sealed, trust)
    assert not result.ok and result.reason == "expired"
    assert "expired on" in result.message


def test_a_valid_seal_checked_after_its_certificate_expired_is_expired(sealed, trust):
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3650)
    assert verify_sealed(sealed, trust, now=later).reason == "expired"


def test_a_seal_checked_before_its_certificate_is_valid_is_not_yet_valid(sealed, trust):
    earlier = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    result = verify_sealed(sealed, trust, now=earlier)
    assert result.reason == "not_yet_valid" and "not valid before" in result.message


def test_revoked_certificate_is_rejected_once_the_crl_lists_it(pki):
    issued = pki["ca"].issue_certificate("seal-to-revoke", "将被吊销的印章 (SANDBOX ONLY)", "重庆市公安局")
    sealed = XadesSigner(issued.cert_path, issued.key_path).sign(licence_xml())
    assert verify_sealed(sealed, TrustStore.load(pki["trust_config"])).ok
    pki["ca"].revoke(issued.serial)
    result = verify_sealed(sealed, TrustStore.load(pki["trust_config"]))  # the rewritten CRL is picked up
    assert not result.ok and result.reason == "revoked"


def test_certificate_that_may_not_sign_is_key_usage(pki, trust):
    issued = pki["ca"].issue_certificate("enc-only", "加密证书 (SANDBOX ONLY)", "重庆市公安局",
                                         key_usage=("key_encipherment",))
    sealed = XadesSigner(issued.cert_path, issued.key_path).sign(licence_xml())
    assert verify_sealed(sealed, trust).reason == "key_usage"


def test_crl_not_signed_by_a_trusted_ca_is_refused(pki):
    with pytest.raises(TrustConfigError, match="not a trusted CA"):
        TrustStore.from_files([pki["ca_cert"]], [pki["untrusted_ca"].crl_path])


def test_trust_store_is_loaded_once(pki):
    assert TrustStore.load(pki["trust_config"]) is TrustStore.load(pki["trust_config"])


# ------------------------------------------------------------------ missing and hostile input


def test_unsigned_document_is_missing(trust):
    result = verify_sealed(licence_xml(), trust)
    assert not result.ok and result.reason == "missing"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<Licence>&lol9;</Licence>"""


def test_billion_laughs_is_malformed(trust):
    result = verify_sealed(BILLION_LAUGHS, trust)
    assert not result.ok and result.reason == "malformed"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_external_entity_is_malformed_and_the_file_is_never_read(tmp_path, trust, encoding):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER", encoding="utf-8")
    xxe = (f'<?xml version="1.0" encoding="{encoding}"?>\n<!DOCTYPE l [<!ENTITY x SYSTEM "file://{secret}">]>'
           f"<Licence>&x;</Licence>").encode(encoding)
    result = verify_sealed(xxe, trust)
    assert result.reason == "malformed"
    assert "TOP-SECRET-MARKER" not in result.message


@pytest.mark.timeout(20)
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_external_entity_pointing_at_a_fifo_does_not_block(tmp_path, trust, encoding):
    # Opening a FIFO for reading blocks until a writer appears: a parser that tried to read the entity would hang.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    xxe = (f'<?xml version="1.0" encoding="{encoding}"?>\n<!DOCTYPE l [<!ENTITY x SYSTEM "file://{fifo}">]>'
           f"<Licence>&x;</Licence>").encode(encoding)
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(result=verify_sealed(xxe, trust)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader so the thread can end, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("the verifier tried to read the external entity")
    assert outcome["result"].reason == "malformed"


def test_oversized_and_broken_documents_are_malformed(trust):
    assert verify_sealed(b"<a>" + b"x" * 100 + b"</a>", trust, max_bytes=50).reason == "malformed"
    assert verify_sealed(b"<Licence><unclosed></Licence>", trust).reason == "malformed"
    assert verify_sealed(b"", trust).reason == "malformed"


# ------------------------------------------------------------------ licences


def test_licence_with_a_bad_holder_code_type_names_the_field():
    with pytest.raises(LicenceError, match="holder_code_type"):
        licence_xml(holder_code_type="999")


def test_licence_with_a_wrong_id_number_is_refused_without_echoing_it():
    bad = make_id_number("500103", dt.date(1990, 5, 1), 12, "M")[:-1] + "0"
    with pytest.raises(LicenceError, match="holder_code") as caught:
        licence_xml(holder_code=bad, holder_code_type="111")
    assert bad not in str(caught.value)


def test_sealed_licence_with_a_wrong_check_character_fails_parsing(signer, trust):
    root = etree.fromstring(licence_xml())
    identifier = root.find(f"{{{LICENCE_NS}}}Identifier")
    last = identifier.text[-1]
    identifier.text = identifier.text[:-1] + ("0" if last != "0" else "1")
    result = verify_sealed(signer.sign(etree.tostring(root)), trust)
    assert result.ok  # the seal is fine: the department sealed a bad identifier
    with pytest.raises(LicenceError, match="identifier.*check character"):
        parse_licence(result.element)


# ------------------------------------------------------------------ receipts


@pytest.fixture(scope="module")
def platform_signer(pki):
    return XadesSigner(pki["platform"].cert_path, pki["platform"].key_path)


def test_receipt_verifies_and_acknowledges_the_document(sealed, trust, platform_signer):
    seal = verify_sealed(sealed, trust)
    receipt = build_receipt(sealed, seal, platform_signer, receiver="渝快办 mock platform")
    result = verify_receipt(receipt, trust, document=sealed)
    assert result.ok, result.message
    assert result.fields["document_id"] == parse_licence(seal.element)["identifier"]
    assert result.fields["document_digest"] == hashlib.sha256(sealed).hexdigest()
    assert result.fields["signed_data_digest"] == seal.digest
    assert result.fields["verification"] == "valid"
    assert "mock platform" in result.seal.signer_subject


def test_tampered_receipt_is_detected(sealed, trust, platform_signer):
    receipt = build_receipt(sealed, verify_sealed(sealed, trust), platform_signer, receiver="渝快办 mock platform")
    tampered = receipt.replace(b'result="valid"', b'result="revoked"')
    assert tampered != receipt
    assert verify_receipt(tampered, trust).reason == "digest_mismatch"


def test_receipt_for_other_bytes_does_not_acknowledge_the_document(sealed, trust, platform_signer):
    receipt = build_receipt(sealed, verify_sealed(sealed, trust), platform_signer, receiver="渝快办 mock platform")
    other = sealed.replace(b"<?xml version='1.0' encoding='UTF-8'?>", b"")
    result = verify_receipt(receipt, trust, document=other)
    assert not result.ok and result.reason == "digest_mismatch"


def test_receipt_records_a_rejected_document(trust, platform_signer):
    unsigned = licence_xml()
    receipt = build_receipt(unsigned, verify_sealed(unsigned, trust), platform_signer, receiver="渝快办 mock platform")
    result = verify_receipt(receipt, trust, document=unsigned)
    assert result.ok and result.fields["verification"] == "missing"
    assert result.fields["document_id"].startswith("sha256:")
