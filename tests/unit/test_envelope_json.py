"""canonical_json / compact_json write the same bytes whichever encoder runs (msgspec for plain values, json for the
rest): the manifest digest, idempotency keys and the ledger's hashes must never depend on it."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from tongban.bus.envelope import Envelope, canonical_json, compact_json

JSON_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
JSON_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # no lone surrogates
plain = st.recursive(st.none() | st.booleans() | st.integers() | text,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=20)


@given(plain)
def test_plain_values_are_written_exactly_as_json_writes_them(value):
    assert canonical_json(value) == JSON_CANONICAL.encode(value).encode("utf-8")
    assert compact_json(value) == JSON_COMPACT.encode(value).encode("utf-8")


@pytest.mark.parametrize("value", [
    {"amount": 1e16, "rate": 0.1}, {"n": float("nan")}, {1: "integer key"}, {"huge": 2 ** 80},
    {"control": "\x00\x1f\x7f\u2028", "key \u00e9": "办件", "\U0001f600": "astral"},
    {"tuple": (1, 2)}, {"other": object.__name__},
])
def test_floats_odd_keys_and_other_types_keep_json_s_bytes(value):
    assert canonical_json(value) == JSON_CANONICAL.encode(value).encode("utf-8")
    assert compact_json(value) == JSON_COMPACT.encode(value).encode("utf-8")


def test_a_lone_surrogate_fails_as_json_fails():
    with pytest.raises(UnicodeEncodeError):
        canonical_json({"name": "\udcff"})


def test_an_envelope_reads_back_what_it_wrote():
    env = Envelope("flowback_record", "mps", "mps:R1:abc", {"record": {"ROWGUID": "R1", "APPLYERNAME": "张三"},
                                                              "route": {"rolled_up": True}}, region="500101")
    assert env.to_bytes() == JSON_COMPACT.encode(env.__dict__).encode("utf-8")
    assert Envelope.from_bytes(env.to_bytes()) == env
