"""Seal verification refuses transforms it does not know, even when a trusted key signed them (issue 20 item 6).

signxml applies the transforms it knows and skips the rest, so a seal whose data reference carries an XSLT (or
XPath, or base64) transform, re-signed by a trusted department key, used to verify as `valid`. The verifier now
accepts only what XAdES-BES needs — the enveloped-signature transform and Canonical XML 1.0 / 1.1 / exclusive,
with or without comments — and answers `unsupported_transform` for anything else.
"""
from __future__ import annotations

import datetime as dt

import pytest
from lxml.etree import SubElement
from signxml import DigestAlgorithm
from signxml.xades import XAdESDataObjectFormat

from tongban.seal import REASONS, TrustStore, XadesSigner, verify_sealed
from tongban.seal.ca import init_sandbox_ca
from tongban.seal.licence import build_licence
from tongban.seal.signer import _XAdESWithClock
from adapters.safexml import parse_untrusted
from tongban.codes import make_credit_code

DS = "http://www.w3.org/2000/09/xmldsig#"
XSLT = "http://www.w3.org/TR/1999/REC-xslt-19991116"
XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
BASE64 = "http://www.w3.org/2000/09/xmldsig#base64"
XPATH_FILTER2 = "http://www.w3.org/2002/06/xmldsig-filter2"
SIGNED_AT = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.timezone.utc)
CODE = make_credit_code("1", "1", "500000", "00000001")


@pytest.fixture(scope="module")
def department(tmp_path_factory):
    """A sandbox CA with one trusted department seal: (trust store, that department's signer)."""
    pki = init_sandbox_ca(tmp_path_factory.mktemp("pki-transforms"), [("scjgj", "重庆市市场监督管理局")])
    issued = pki["departments"]["scjgj"]
    return TrustStore.load(pki["trust_config"]), XadesSigner(issued.cert_path, issued.key_path)


@pytest.fixture
def trust(department):
    return department[0]


@pytest.fixture
def seal(department):
    return department[1]


def _licence() -> bytes:
    return build_licence(
        type_name="营业执照", type_code=CODE + "001", licence_name="营业执照", licence_number="500103000012345",
        issuer="重庆市市场监督管理局", issuer_code=CODE, issue_date=dt.date(2025, 3, 1), holder="重庆山城火锅有限公司",
        holder_code=make_credit_code("9", "1", "500103", "MA5U7R2X"), holder_code_type="001",
        valid_from=dt.date(2025, 3, 1), region="500103", serial="2025030100001", face_data={})


class _ExtraTransform(_XAdESWithClock):
    """A signer that adds `extra` transforms to the data reference: what an attacker holding (or having fooled)
    a trusted key produces."""

    def __init__(self, extra: list[str], signing_time, **kwargs):
        self.extra = extra
        super().__init__(signing_time, **kwargs)

    def _build_transforms_for_reference(self, *, transforms_node, reference, **kwargs):
        super()._build_transforms_for_reference(transforms_node=transforms_node, reference=reference, **kwargs)
        if reference.URI == "":
            for algorithm in self.extra:
                transform = SubElement(transforms_node, f"{{{DS}}}Transform", Algorithm=algorithm)
                if algorithm == XSLT:  # a stylesheet that would show another holder to an XSLT-applying verifier
                    sheet = SubElement(transform, "{http://www.w3.org/1999/XSL/Transform}stylesheet", version="1.0")
                    SubElement(sheet, "{http://www.w3.org/1999/XSL/Transform}template", match="/").text = "冒名顶替"


def _sign_with(seal: XadesSigner, extra: list[str], *, c14n_algorithm=None) -> bytes:
    from lxml import etree

    options = {} if c14n_algorithm is None else {"c14n_algorithm": c14n_algorithm}
    signer = _ExtraTransform(extra, SIGNED_AT, signature_algorithm=seal._signature_method,
                             digest_algorithm=DigestAlgorithm.SHA256,
                             data_object_format=XAdESDataObjectFormat(Description="t", MimeType="text/xml"), **options)
    signed = signer.sign(parse_untrusted(_licence()), key=seal._key, cert=[seal.certificate])
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


def test_unsupported_transform_is_a_listed_reason():
    assert "unsupported_transform" in REASONS
    from tongban.seal import verifier

    assert "unsupported_transform" in verifier.__doc__ and "XSLT" in verifier.__doc__


def test_an_xslt_transform_resigned_by_a_trusted_key_is_refused(seal, trust):
    document = _sign_with(seal, [XSLT])
    assert XSLT.encode() in document
    result = verify_sealed(document, trust)
    assert not result.ok
    assert result.reason == "unsupported_transform"
    assert XSLT in result.message and result.element is None


@pytest.mark.parametrize("algorithm", [XPATH, BASE64, XPATH_FILTER2, "urn:made-up"])
def test_any_other_unknown_transform_is_refused(seal, trust, algorithm):
    assert verify_sealed(_sign_with(seal, [algorithm]), trust).reason == "unsupported_transform"


@pytest.mark.parametrize("algorithm, verifies", [
    ("http://www.w3.org/TR/2001/REC-xml-c14n-20010315", True),
    ("http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments", True),
    ("http://www.w3.org/2006/12/xml-c14n11", True),
    ("http://www.w3.org/2006/12/xml-c14n11#WithComments", True),
    # Accepted by the transform check; signxml's XAdES signer itself computes the SignedProperties digest
    # differently under exclusive c14n, so its own seals do not verify (a signxml limitation, not a refusal).
    ("http://www.w3.org/2001/10/xml-exc-c14n#", False),
    ("http://www.w3.org/2001/10/xml-exc-c14n#WithComments", False),
])
def test_the_canonicalisations_xades_bes_needs_are_not_refused(seal, trust, algorithm, verifies):
    document = _sign_with(seal, [], c14n_algorithm=algorithm)
    assert f'Algorithm="{algorithm}"'.encode() in document
    result = verify_sealed(document, trust)
    assert result.reason != "unsupported_transform"
    assert result.ok is verifies, f"{result.reason}: {result.message}"


def test_an_unknown_signedinfo_canonicalisation_is_refused(seal, trust):
    document = _sign_with(seal, []).replace(b'CanonicalizationMethod Algorithm="http://www.w3.org/2006/12/xml-c14n11"',
                                            b'CanonicalizationMethod Algorithm="http://www.w3.org/2010/xml-c14n2"')
    assert b"xml-c14n2" in document
    assert verify_sealed(document, trust).reason == "unsupported_transform"


def test_the_shipped_signer_uses_only_known_transforms(seal, trust):
    assert verify_sealed(seal.sign(_licence(), signing_time=SIGNED_AT), trust).reason == "valid"
