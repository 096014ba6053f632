"""Hostile XML is rejected quickly, clearly, and without reading files or making requests."""
from __future__ import annotations

import http.server
import os
import threading

import pytest
from lxml import etree

from adapters import safexml

pytestmark = pytest.mark.timeout(10)  # a hang (entity expansion, blocked read) fails instead of stalling the run

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Records><Record>&lol9;</Record></Records>"""


def quadratic_blowup() -> bytes:
    big = "x" * 50_000
    return (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "{big}">]><Records><Record>'
            + "&a;" * 50_000 + "</Record></Records>").encode()


def external_entity(uri: str) -> bytes:
    return (f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY ext SYSTEM "{uri}">]>'
            f"<Records><Record>&ext;</Record></Records>").encode()


def external_dtd(uri: str) -> bytes:
    return f'<?xml version="1.0"?><!DOCTYPE Records SYSTEM "{uri}"><Records><Record>a</Record></Records>'.encode()


@pytest.fixture
def counting_http_server():
    """A local HTTP server that counts requests: the parser must never call it."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = b'<!ENTITY leak "LEAKED">'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def both_ways(tmp_path, document: bytes, **kwargs):
    """Run the in-memory, the signed-document and the streaming entry points on the same document; return the
    three exceptions."""
    errors = []
    with pytest.raises(safexml.XMLRejected) as in_memory:
        safexml.parse_bytes(document, max_bytes=kwargs.get("max_bytes", 10 ** 7))
    errors.append(in_memory.value)
    with pytest.raises(safexml.XMLRejected) as signed:
        safexml.parse_untrusted(document, max_bytes=kwargs.get("max_bytes", 10 ** 7))
    errors.append(signed.value)
    path = tmp_path / "doc.xml"
    path.write_bytes(document)
    with pytest.raises(safexml.XMLRejected) as streamed:
        list(safexml.iterparse_file(path, "Record", max_bytes=kwargs.get("max_bytes", 10 ** 7)))
    errors.append(streamed.value)
    return errors


@pytest.mark.parametrize("document", [BILLION_LAUGHS, quadratic_blowup()], ids=["billion-laughs", "quadratic-blowup"])
def test_entity_expansion_attacks_are_rejected_as_hostile(tmp_path, document):
    for error in both_ways(tmp_path, document):
        assert isinstance(error, safexml.HostileXMLError)
        assert "DOCTYPE" in str(error)


def test_external_entity_to_a_local_file_is_rejected_and_the_file_is_never_opened(tmp_path):
    # A FIFO blocks whoever opens it for reading until a writer appears: had the parser tried to read the
    # "file", this test would hang and the timeout would fail it.
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo)
    for error in both_ways(tmp_path, external_entity(f"file://{fifo}")):
        assert isinstance(error, safexml.HostileXMLError)


def test_external_entity_to_etc_passwd_leaks_nothing(tmp_path):
    for error in both_ways(tmp_path, external_entity("file:///etc/passwd")):
        assert isinstance(error, safexml.HostileXMLError)
        assert "root:" not in str(error)


def test_external_entity_and_external_dtd_over_http_make_no_request(tmp_path, counting_http_server):
    base, hits = counting_http_server
    for document in (external_entity(f"{base}/entity"), external_dtd(f"{base}/evil.dtd")):
        for error in both_ways(tmp_path, document):
            assert isinstance(error, safexml.HostileXMLError)
    assert hits == []


def test_the_plain_parser_does_not_expand_entities_even_when_used_directly():
    root = etree.fromstring(external_entity("file:///etc/passwd"), safexml.parser())
    assert "root:" not in etree.tostring(root, encoding="unicode")


@pytest.mark.parametrize("document,fragment", [
    (b"<Records><Record>1</Record><Record>2</Rec", "line 1"),
    (b"<Records>\n<Record>1</Record>\n<Record>2</Wrong>\n</Records>", "line 3"),
    (b"this is not xml", "not well-formed"),
])
def test_malformed_and_truncated_xml_raise_a_clear_error_with_the_line(tmp_path, document, fragment):
    for error in both_ways(tmp_path, document):
        assert isinstance(error, safexml.MalformedXMLError)
        assert fragment in str(error)


def test_oversize_documents_are_refused_before_parsing(tmp_path):
    document = b"<Records>" + b"<Record>x</Record>" * 1000 + b"</Records>"
    for error in both_ways(tmp_path, document, max_bytes=1000):
        assert isinstance(error, safexml.XMLTooLargeError)
        assert "1000" in str(error)


def test_iterparse_streams_records_and_frees_the_ones_already_seen(tmp_path):
    path = tmp_path / "export.xml"
    path.write_bytes(b'<?xml version="1.0"?><Export xmlns="urn:x"><Cases>'
                     + b"".join(b"<Case><No>%d</No></Case>" % i for i in range(500)) + b"</Cases></Export>")
    seen, siblings = [], []
    for element in safexml.iterparse_file(path, "Case", max_bytes=10 ** 6):
        seen.append(element.findtext("{urn:x}No"))
        siblings.append(sum(1 for _ in element.itersiblings(preceding=True)))
    assert seen == [str(i) for i in range(500)]
    assert max(siblings) <= 1  # only the record just before is still there: the rest were freed


def test_zeep_settings_forbid_dtds_entities_and_external_references():
    from zeep.exceptions import DTDForbidden
    from zeep.loader import parse_xml

    settings = safexml.zeep_settings()
    assert (settings.forbid_dtd, settings.forbid_entities, settings.forbid_external, settings.xml_huge_tree) == (
        True, True, True, False)
    with pytest.raises(DTDForbidden):
        parse_xml(b'<!DOCTYPE r [<!ENTITY a "b">]><r>&a;</r>', transport=None, settings=settings)
    with pytest.raises(DTDForbidden):
        parse_xml(external_dtd("http://127.0.0.1:9/evil.dtd"), transport=None, settings=settings)


def test_signed_documents_refuse_a_doctype_in_another_encoding_and_anything_not_bytes():
    # The byte scan cannot see a UTF-16 DOCTYPE; the parsed document's own declaration still gives it away.
    utf16 = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY a "x">]><r>&a;</r>'.encode("utf-16")
    with pytest.raises(safexml.HostileXMLError, match="DOCTYPE"):
        safexml.parse_untrusted(utf16)
    with pytest.raises(safexml.XMLRejected, match="expected XML bytes, got str"):
        safexml.parse_untrusted("<r/>")
    assert safexml.parse_untrusted(b"<r><a>1</a></r>").findtext("a") == "1"


def test_signed_documents_are_bounded_at_five_mebibytes():
    big = b"<r>" + b"x" * safexml.MAX_SEALED_BYTES + b"</r>"
    with pytest.raises(safexml.XMLTooLargeError, match=str(safexml.MAX_SEALED_BYTES)):
        safexml.parse_untrusted(big)


def test_the_thread_parser_is_hardened_and_one_per_thread():
    assert safexml.thread_parser() is safexml.thread_parser()
    other = []
    worker = threading.Thread(target=lambda: other.append(safexml.thread_parser()))
    worker.start()
    worker.join()
    assert other[0] is not safexml.thread_parser()
    root = etree.fromstring(external_entity("file:///etc/passwd"), safexml.thread_parser())
    assert "root:" not in etree.tostring(root, encoding="unicode")
