"""The container of an evidence package: ASiC-E style (ETSI EN 319 162-1), signed with tongban's audit key.

- the first member is `mimetype`, stored (not compressed), holding exactly `application/vnd.etsi.asic-e+zip`;
- `META-INF/ASiCManifest.xml` lists every other member with its SHA-256 (asic:DataObjectReference), and carries an
  enveloped XAdES-BES signature (signxml, the same signer and verifier as department seals: tongban.seal) by the
  audit key — so the manifest, and through its digests every member, is signed once.
"""
from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from lxml import etree

MIMETYPE = "application/vnd.etsi.asic-e+zip"
MANIFEST = "META-INF/ASiCManifest.xml"
ASIC_NS = "http://uri.etsi.org/02918/v1.2.1#"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
SHA256_URI = "http://www.w3.org/2001/04/xmlenc#sha256"


def build_manifest(members: dict[str, bytes]) -> bytes:
    root = etree.Element(f"{{{ASIC_NS}}}ASiCManifest", nsmap={"asic": ASIC_NS, "ds": DS_NS})
    for name in sorted(members):
        ref = etree.SubElement(root, f"{{{ASIC_NS}}}DataObjectReference", URI=name)
        etree.SubElement(ref, f"{{{DS_NS}}}DigestMethod", Algorithm=SHA256_URI)
        etree.SubElement(ref, f"{{{DS_NS}}}DigestValue").text = base64.b64encode(
            hashlib.sha256(members[name]).digest()).decode("ascii")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def read_manifest(element: etree._Element) -> dict[str, str]:
    """URI → SHA-256 (hex) from a verified manifest element."""
    digests: dict[str, str] = {}
    for ref in element.iter(f"{{{ASIC_NS}}}DataObjectReference"):
        method = ref.find(f"{{{DS_NS}}}DigestMethod")
        if method is None or method.get("Algorithm") != SHA256_URI:
            raise ValueError(f"manifest entry {ref.get('URI')!r}: digest method is not SHA-256")
        value = ref.findtext(f"{{{DS_NS}}}DigestValue") or ""
        digests[ref.get("URI") or ""] = base64.b64decode(value).hex()
    return digests


def write_container(path: Path, members: dict[str, bytes], signed_manifest: bytes) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with zipfile.ZipFile(tmp, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE.encode("ascii"), compress_type=zipfile.ZIP_STORED)
        for name in sorted(members):
            archive.writestr(name, members[name], compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr(MANIFEST, signed_manifest, compress_type=zipfile.ZIP_DEFLATED)
    tmp.replace(path)
    return path
