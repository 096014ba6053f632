"""The ingest's writes with fewer statements: the stored case numbers of many keys read at once, and the prefetch's
answers saved with one upsert — the same rows as one read and one write per key or user gave."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from tongban.identity.resolver import IdentityResolver
from tongban.identity.tables import identity_users
from tongban.identity.users import LegacyUser
from tongban.settings import Settings
from tongban.store import state as st


@pytest.fixture
def store(tmp_path):
    from tongban.store import Store

    store = Store(f"sqlite:///{tmp_path}/tongban.db")
    yield store
    store.dispose()


def test_case_numbers_of_reads_the_stored_numbers_of_many_keys(store):
    with store.write() as conn:
        assert st.save_case_number(conn, "a", "k1", "N1", "item") == "N1"
        assert st.save_case_number(conn, "a", "k2", "N2", "item") == "N2"
        assert st.save_case_number(conn, "b", "k3", "N3", "item") == "N3"
        assert st.save_case_number(conn, "a", "k1", "OTHER", "item") == "N1"  # the first number is kept
    with store.read() as conn:
        assert st.case_numbers_of(conn, "a", ["k1", "k2", "k3", "k9", "k1"]) == {"k1": "N1", "k2": "N2"}
        assert st.case_numbers_of(conn, "a", [f"x{i}" for i in range(1200)] + ["k2"]) == {"k2": "N2"}
        assert st.case_numbers_of(conn, "a", []) == {}


def _rows(store) -> dict:
    with store.read() as conn:
        return {row.pii_hash: row._asdict() for row in conn.execute(select(identity_users))}


def test_saving_the_prefetched_answers_at_once_writes_what_one_by_one_wrote(tmp_path):
    from tongban.store import Store

    settings = Settings()
    one, many = (Store(f"sqlite:///{tmp_path}/{name}.db") for name in ("one", "many"))
    users = [LegacyUser(system="s", id_type="111", id_number=f"50010119900101{i:04d}") for i in range(3)]
    first = [(users[0], "h0", "invalid", None, "bad"), (users[1], "h1", "resolved", "U1", None)]
    again = [(users[0], "h0", "resolved", "U0", None), (users[2], "h2", "unknown", None, "not found")]
    for store in (one, many):
        resolver = IdentityResolver(store=store, platform=None, settings=settings)
        for answers in (first, again):
            with store.write() as conn:
                if store is one:
                    for answer in answers:
                        resolver._save_in(conn, *answer)
                else:
                    resolver._save_all(conn, answers)
    by_one, by_many = _rows(one), _rows(many)
    assert set(by_many) == {"h0", "h1", "h2"} and by_many["h0"]["status"] == "resolved"
    assert by_many["h0"]["first_seen"] < by_many["h0"]["updated_at"]  # an update keeps when it was first seen
    strip = ("first_seen", "updated_at", "cipher")  # times differ between the two stores; the cipher is randomised
    assert ({h: {k: v for k, v in r.items() if k not in strip} for h, r in by_one.items()}
            == {h: {k: v for k, v in r.items() if k not in strip} for h, r in by_many.items()})
    one.dispose()
    many.dispose()
