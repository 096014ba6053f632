"""Make GB/T 38540 seals and signatures: an SES_Seal (电子印章) made by a seal maker (制章人), and an SES_Signature
(电子签章) over a document, written as one file with the document (see `structures` for the container).

`SM2Signer(cert, key).sign(document)` uses a seal given as `seal=` (an SES_Seal DER a maker issued), or else
makes one on the spot with the signer as its own maker: the seal lists the signer's certificate and is valid as
long as that certificate is.
"""
from __future__ import annotations

import datetime as dt
from html import escape
from pathlib import Path

from asn1crypto import x509

from tongban.seal.signer import SigningError

from . import primitives as sm2
from .ca import load_certificate
from .structures import (CERT_LIST_TYPE_CERTS, CONTAINER_FORMAT, SES_HEADER_ID, SES_VERSION, SESSeal,
                         SESSealInfo, SESSealSignedPart, SESSignature, SealedDocument, TBSSign)

SEAL_TYPE_OFFICIAL = 1   # 单位印章 (organisation seal); 2 would be a personal seal
VENDOR_ID = "tongban"


def seal_picture(name: str) -> tuple[str, bytes, int, int]:
    """A round red seal as SVG (type, data, width mm, height mm): the image a viewer shows for the seal."""
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="40mm" height="40mm" viewBox="0 0 200 200">'
           '<circle cx="100" cy="100" r="92" fill="none" stroke="#d00" stroke-width="8"/>'
           '<text x="100" y="112" font-size="40" text-anchor="middle" fill="#d00">★</text>'
           f'<text x="100" y="160" font-size="14" text-anchor="middle" fill="#d00">{escape(name)}</text></svg>')
    return "SVG", svg.encode("utf-8"), 40, 40


def _utc(when: dt.datetime | None) -> dt.datetime:
    when = when or dt.datetime.now(dt.timezone.utc)
    return (when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)
            ).replace(microsecond=0)


def _validity(cert: x509.Certificate) -> tuple[dt.datetime, dt.datetime]:
    validity = cert["tbs_certificate"]["validity"]
    return validity["not_before"].native, validity["not_after"].native


def make_seal(maker_cert: x509.Certificate, maker_key: bytes, signer_certs: list[x509.Certificate], *,
              name: str, es_id: str, valid_start: dt.datetime | None = None, valid_end: dt.datetime | None = None,
              now: dt.datetime | None = None) -> SESSeal:
    """An SES_Seal named `name` for the signers' certificates, signed by the maker (SM2-with-SM3)."""
    now = _utc(now)
    start, end = _validity(signer_certs[0])
    picture_type, picture, width, height = seal_picture(name)
    info = SESSealInfo({
        "header": {"ID": SES_HEADER_ID, "version": SES_VERSION, "Vid": VENDOR_ID},
        "esID": es_id,
        "property": {
            "type": SEAL_TYPE_OFFICIAL, "name": name, "certListType": CERT_LIST_TYPE_CERTS,
            "certList": [cert.dump() for cert in signer_certs],
            "createDate": now, "validStart": _utc(valid_start or start), "validEnd": _utc(valid_end or end),
        },
        "picture": {"type": picture_type, "data": picture, "width": width, "height": height},
    })
    signed = SESSealSignedPart({"eSealInfo": info, "cert": maker_cert.dump(), "signAlgID": sm2.SM2_SM3_OID})
    seal = SESSeal({"eSealInfo": info, "cert": maker_cert.dump(), "signAlgID": sm2.SM2_SM3_OID,
                    "signedValue": sm2.sign(maker_key, signed.dump())})
    return SESSeal.load(seal.dump())  # a decoded seal re-encodes by copying its bytes: cheap to embed per document


def _subject_name(cert: x509.Certificate) -> str:
    names = cert.subject.native
    return str(names.get("common_name") or names.get("organization_name") or "seal")


class SM2Signer:
    """Seals documents with an SM2 seal certificate and key (PEM files from `tongban certs init --sm2`)."""

    def __init__(self, cert_path: str | Path, key_path: str | Path, *, seal: bytes | None = None):
        try:
            self.certificate = load_certificate(cert_path)
            self.key = sm2.load_private_key_pem(Path(key_path).read_bytes())
            public_key = sm2.public_key_from_info(self.certificate["tbs_certificate"]["subject_public_key_info"])
        except OSError as exc:
            raise SigningError(f"cannot read {exc.filename}: {exc.strerror}") from None
        except ValueError as exc:
            raise SigningError(f"not an SM2 seal certificate and key: {exc}") from None
        if sm2.public_key_of(self.key) != public_key:
            raise SigningError(f"the key {key_path} does not belong to the certificate {cert_path}")
        self.seal = SESSeal.load(seal) if seal is not None else None

    def own_seal(self, *, now: dt.datetime | None = None) -> SESSeal:
        return make_seal(self.certificate, self.key, [self.certificate], name=_subject_name(self.certificate),
                         es_id=f"SANDBOX-{self.certificate.serial_number:x}", now=now)

    def signature(self, document: bytes, *, media_type: str = "application/xml", now: dt.datetime | None = None,
                  seal: SESSeal | None = None) -> SESSignature:
        seal = seal or self.seal or self.own_seal(now=now)
        to_sign = TBSSign({"version": SES_VERSION, "eseal": seal, "timeInfo": _utc(now),
                           "dataHash": sm2.sm3(document), "propertyInfo": media_type})
        return SESSignature({"toSign": to_sign, "cert": self.certificate.dump(), "signatureAlgID": sm2.SM2_SM3_OID,
                             "signature": sm2.sign(self.key, to_sign.dump())})

    def sign(self, document: bytes, *, media_type: str = "application/xml", now: dt.datetime | None = None,
             seal: SESSeal | None = None) -> bytes:
        """The container (DER) holding `document` and its SES_Signature."""
        document = bytes(document)
        return SealedDocument({"format": CONTAINER_FORMAT, "mediaType": media_type, "document": document,
                               "signature": self.signature(document, media_type=media_type, now=now, seal=seal),
                               }).dump()
