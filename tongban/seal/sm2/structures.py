"""The GB/T 38540-2020 electronic seal structures (电子印章数据 SES_Seal, 电子签章数据 SES_Signature) and tongban's
one-file container for an SM2-sealed document, as asn1crypto classes (DER in and out, never by hand).

    SES_Seal ::= SEQUENCE {
        eSealInfo    SES_SealInfo,
        cert         OCTET STRING,            -- the seal maker's (制章人) certificate, DER
        signAlgID    OBJECT IDENTIFIER,       -- 1.2.156.10197.1.501 SM2-with-SM3
        signedValue  BIT STRING }             -- maker's SM2 signature over SEQUENCE {eSealInfo, cert, signAlgID}
    SES_SealInfo ::= SEQUENCE {
        header SES_Header, esID IA5String, property SES_ESPropertyInfo, picture SES_ESPictrueInfo,
        extDatas ExtensionDatas OPTIONAL }
    SES_Header ::= SEQUENCE { ID IA5String ("ES"), version INTEGER (4), Vid IA5String }
    SES_ESPropertyInfo ::= SEQUENCE {
        type INTEGER, name UTF8String, certListType INTEGER (1: certs), certList SES_CertList,
        createDate GeneralizedTime, validStart GeneralizedTime, validEnd GeneralizedTime }
    SES_CertList ::= CHOICE { certs CertInfoList, certDigestList CertDigestList }   -- tongban: certs only
    CertInfoList ::= SEQUENCE OF OCTET STRING                                      -- signer certificates
    SES_ESPictrueInfo ::= SEQUENCE { type IA5String, data OCTET STRING, width INTEGER, height INTEGER }

    SES_Signature ::= SEQUENCE {
        toSign TBS_Sign, cert OCTET STRING (signer certificate), signatureAlgID OBJECT IDENTIFIER,
        signature BIT STRING (SM2 over DER(toSign)), timeStamp [0] BIT STRING OPTIONAL }
    TBS_Sign ::= SEQUENCE {
        version INTEGER (4), eseal SES_Seal, timeInfo GeneralizedTime, dataHash BIT STRING (SM3 of the document),
        propertyInfo IA5String, extDatas ExtensionDatas OPTIONAL }

Signature values inside the BIT STRINGs are DER SEQUENCE {r, s} (GB/T 35276). The container (tongban's choice;
GB/T 38540 leaves the carrier to the document format)::

    TongbanSM2SealedDocument ::= SEQUENCE {
        format     IA5String ("tongban-sm2-sealed/1"),
        mediaType  IA5String ("application/xml"),
        document   OCTET STRING,              -- the signed document, byte for byte
        signature  SES_Signature OPTIONAL }   -- absent: not sealed
"""
from __future__ import annotations

from asn1crypto import core

SES_VERSION = 4
SES_HEADER_ID = "ES"
CERT_LIST_TYPE_CERTS = 1
CONTAINER_FORMAT = "tongban-sm2-sealed/1"


class ExtData(core.Sequence):
    _fields = [("extnID", core.ObjectIdentifier), ("critical", core.Boolean, {"default": False}),
               ("extnValue", core.OctetString)]


class ExtensionDatas(core.SequenceOf):
    _child_spec = ExtData


class SESHeader(core.Sequence):
    _fields = [("ID", core.IA5String), ("version", core.Integer), ("Vid", core.IA5String)]


class CertInfoList(core.SequenceOf):
    _child_spec = core.OctetString


class SESESPropertyInfo(core.Sequence):
    _fields = [
        ("type", core.Integer),
        ("name", core.UTF8String),
        ("certListType", core.Integer),
        ("certList", CertInfoList),
        ("createDate", core.GeneralizedTime),
        ("validStart", core.GeneralizedTime),
        ("validEnd", core.GeneralizedTime),
    ]


class SESESPictrueInfo(core.Sequence):  # the standard's spelling
    _fields = [("type", core.IA5String), ("data", core.OctetString), ("width", core.Integer),
               ("height", core.Integer)]


class SESSealInfo(core.Sequence):
    _fields = [
        ("header", SESHeader),
        ("esID", core.IA5String),
        ("property", SESESPropertyInfo),
        ("picture", SESESPictrueInfo),
        ("extDatas", ExtensionDatas, {"optional": True}),
    ]


class SESSealSignedPart(core.Sequence):
    """What the seal maker signs: the seal information, the maker's certificate and the algorithm."""
    _fields = [("eSealInfo", SESSealInfo), ("cert", core.OctetString), ("signAlgID", core.ObjectIdentifier)]


class SESSeal(core.Sequence):
    """The signed part's fields, then the maker's signature over them."""
    _fields = [*SESSealSignedPart._fields, ("signedValue", core.OctetBitString)]

    def signed_part(self) -> bytes:
        return SESSealSignedPart({name: self[name] for name, *_ in SESSealSignedPart._fields}).dump()


class TBSSign(core.Sequence):
    _fields = [
        ("version", core.Integer),
        ("eseal", SESSeal),
        ("timeInfo", core.GeneralizedTime),
        ("dataHash", core.OctetBitString),
        ("propertyInfo", core.IA5String),
        ("extDatas", ExtensionDatas, {"optional": True}),
    ]


class SESSignature(core.Sequence):
    _fields = [
        ("toSign", TBSSign),
        ("cert", core.OctetString),
        ("signatureAlgID", core.ObjectIdentifier),
        ("signature", core.OctetBitString),
        ("timeStamp", core.OctetBitString, {"implicit": 0, "optional": True}),
    ]


class SealedDocument(core.Sequence):
    _fields = [
        ("format", core.IA5String),
        ("mediaType", core.IA5String),
        ("document", core.OctetString),
        ("signature", SESSignature, {"optional": True}),   # absent: the document is not sealed ("missing")
    ]


def looks_like_container(data: bytes) -> bool:
    """A DER SEQUENCE (0x30) cannot be an XML document, whose first byte is '<', whitespace or a BOM."""
    return bool(data) and data[:1] == b"\x30"


def load_container(data: bytes) -> SealedDocument:
    """Decode the container strictly (DER, no trailing bytes). Nested fields are parsed when first read, so a
    fault deeper down raises ValueError/TypeError there (the verifier turns either into bad_seal_structure)."""
    return SealedDocument.load(bytes(data), strict=True)
