"""XML records becoming dicts: xmltodict against today's lxml path, as ratios measured in the same run.

    .venv/bin/python benchmarks/xmldicts.py            # about a minute
    .venv/bin/python benchmarks/xmldicts.py --quick    # fewer records

Where tongban turns XML into dicts, and what xmltodict would replace (ratio = xmltodict's rate / lxml's rate;
xmltodict is used where the ratio is ≥ 0.8, i.e. within 20 %, see docs/design-notes.md):

- file drop: a department's XML export (`<Export><Cases><Case>…`), read by the files adapter: hardened lxml
  iterparse + `element_to_dict` (adapters/formats/xmlrecords.py) against xmltodict's streaming parse
  (`item_depth`, `item_callback`, expat) of the same file, and against xmltodict per streamed element
  (the hardened iterparse kept, each element serialised and given to xmltodict);
- flowback XML: a national batch (`<FlowbackBatch><Record>…`, sandbox/ministry.py), the same two ways;
- SOAP fault detail: zeep hands the `<detail>` element over already parsed: `element_to_dict` against
  xmltodict of its serialisation.

Each pair runs alternately, best of N in CPU time, so machine noise hits both sides alike; the dicts are checked
equal first. xmltodict is needed only here: the `bench` extra of pyproject.toml (requirements.lock installs it).
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xmltodict  # noqa: E402
from lxml import etree  # noqa: E402

from adapters import safexml  # noqa: E402
from adapters.formats.xmlrecords import element_to_dict  # noqa: E402
from sandbox.filedrop import write_large_xml  # noqa: E402
from sandbox.ministry import large_records, write_records  # noqa: E402


def _local(name: str) -> str:
    return name.rpartition(":")[2]


def _flat(value):
    """xmltodict's shape to element_to_dict's: no '@' on attributes, local names, None text as ''."""
    if isinstance(value, dict):
        return {_local(k.lstrip("@")): _flat(v) for k, v in value.items() if not k.startswith("@xmlns")}
    if isinstance(value, list):
        return [_flat(v) for v in value]
    return "" if value is None else value


def lxml_file(path: Path, tag: str) -> list[dict]:
    return [element_to_dict(e) for e in safexml.iterparse_file(path, tag)]


def xmltodict_file(path: Path, depth: int) -> list[dict]:
    out: list[dict] = []

    def keep(_path, item) -> bool:
        out.append(_flat(item))
        return True

    with open(path, "rb") as handle:
        xmltodict.parse(handle, item_depth=depth, item_callback=keep, disable_entities=True)
    return out


def xmltodict_per_element(path: Path, tag: str) -> list[dict]:
    return [_flat(next(iter(xmltodict.parse(etree.tostring(e), disable_entities=True).values())))
            for e in safexml.iterparse_file(path, tag)]


def fault_detail(fields: int = 6) -> etree._Element:
    detail = etree.Element("detail")
    error = etree.SubElement(detail, "{urn:hrss:errors}Error", code="HRSS-DB-503")
    etree.SubElement(error, "{urn:hrss:errors}Message").text = "数据库暂不可用 database unavailable"
    bad = etree.SubElement(error, "{urn:hrss:errors}Fields")
    for i in range(fields):
        etree.SubElement(bad, "{urn:hrss:errors}Field", name=f"F{i}").text = f"rule {i} broken"
    return detail


def rate(fn, n_items: int) -> float:
    # CPU time of this process: on a shared machine, wall time mostly measures the neighbours.
    start = time.process_time()
    fn()
    return n_items / (time.process_time() - start)


def compare(name: str, lxml_fn, xtd_fn, n_items: int, repeats: int) -> float:
    best_lxml = best_xtd = 0.0
    for _ in range(repeats):  # alternate so that drift affects both
        best_lxml = max(best_lxml, rate(lxml_fn, n_items))
        best_xtd = max(best_xtd, rate(xtd_fn, n_items))
    ratio = best_xtd / best_lxml
    verdict = "xmltodict" if ratio >= 0.8 else "lxml"
    print(f"{name:<34} lxml {best_lxml:>10,.0f}/s   xmltodict {best_xtd:>10,.0f}/s   ratio {ratio:.2f}   → {verdict}",
          flush=True)
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows, repeats, faults = (3_000, 3, 5_000) if args.quick else (10_000, 5, 20_000)
    with tempfile.TemporaryDirectory(prefix="tongban-xmldicts-") as tmp:
        work = Path(tmp)
        drop = write_large_xml(work / "cases.xml", rows)
        write_records(work / "batch", "MPS-20240301-0001", large_records("MPS-20240301-0001", rows))
        batch = work / "batch" / "MPS-20240301-0001.xml"
        detail = fault_detail()

        # Same dicts first: a faster parser that reads something else is no alternative.
        assert lxml_file(drop, "Case") == xmltodict_file(drop, 3) == xmltodict_per_element(drop, "Case")
        assert lxml_file(batch, "Record") == xmltodict_file(batch, 2) == xmltodict_per_element(batch, "Record")
        xtd_detail = _flat(xmltodict.parse(etree.tostring(detail), disable_entities=True)["detail"])
        assert element_to_dict(detail) == xtd_detail, (element_to_dict(detail), xtd_detail)

        print(f"{rows:,} records per file, {faults:,} fault details; best of {repeats}, alternating")
        compare("file drop (streamed file)", lambda: lxml_file(drop, "Case"), lambda: xmltodict_file(drop, 3),
                rows, repeats)
        compare("file drop (per hardened element)", lambda: lxml_file(drop, "Case"),
                lambda: xmltodict_per_element(drop, "Case"), rows, repeats)
        compare("flowback XML (streamed file)", lambda: lxml_file(batch, "Record"),
                lambda: xmltodict_file(batch, 2), rows, repeats)
        compare("flowback XML (per hardened element)", lambda: lxml_file(batch, "Record"),
                lambda: xmltodict_per_element(batch, "Record"), rows, repeats)
        compare("SOAP fault detail", lambda: [element_to_dict(detail) for _ in range(faults)],
                lambda: [xmltodict.parse(etree.tostring(detail), disable_entities=True) for _ in range(faults)],
                faults, repeats)


if __name__ == "__main__":
    random.seed(1)
    main()
