"""Unified users (统一用户体系): resolution at the mock service, the cache, throttling, conflicts, masking."""
from __future__ import annotations

import json
import re
from datetime import date

import httpx
import pytest
from sqlalchemy import select

from tongban import codes
from tongban.codes import make_credit_code, make_id_number
from tongban.identity import (
    ACCOUNT_CHANGED_NUMBER, NUMBER_SHARED_BY_ACCOUNTS, PERSON_NUMBER_FOR_LEGAL_PERSON, IdentityConflict,
    IdentityResolver, IdentityThrottled, IdentityUnresolved, LegacyUser, accept_conflict, decrypt, list_conflicts,
    lookup, normalise_user, pii_hash,
)
from tongban.identity.tables import identity_users
from tongban.platform.client import PlatformClient
from tongban.settings import Settings

PERSON = make_id_number("500103", date(1985, 6, 1), 17, "M")
OTHER_PERSON = make_id_number("500112", date(1990, 2, 3), 42, "F")
COMPANY = make_credit_code("9", "1", "500103", "MA5U7K3Q")


@pytest.fixture
def platform_server(tmp_path):
    from sandbox.platform import create_app
    from sandbox.runner import Server

    server = Server(create_app(None), name="platform").start()
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path, platform_server):
    return Settings(home=tmp_path, platform_url=platform_server.url, pii_key="test-pii-key")


@pytest.fixture
def platform(settings):
    client = PlatformClient(settings)
    yield client
    client.close()


@pytest.fixture
def resolver(sqlite_store, platform, settings):
    return IdentityResolver(store=sqlite_store, platform=platform, settings=settings, max_wait=0.05)


def control(server, **plan) -> dict:
    return httpx.post(f"{server.url}/_sandbox/users", json=plan).json()


def requests_seen(server) -> int:
    return httpx.get(f"{server.url}/_sandbox/users").json()["requests"]


def user(number=PERSON, id_type="111", **extra) -> LegacyUser:
    return normalise_user("legacy-a", {"id_type": id_type, "id_number": number, **extra})


def test_known_applicants_resolve_deterministically_and_cache_hits_never_call_the_platform(
        resolver, sqlite_store, platform, settings, platform_server):
    first = resolver.resolve_user(user())
    company = resolver.resolve_user(user(COMPANY, "001", kind="2"))
    assert re.fullmatch(r"U\d{16}", first) and re.fullmatch(r"U\d{16}", company) and first != company
    asked = requests_seen(platform_server)
    # A fresh resolver (a new run) finds both in the store and asks nobody.
    again = IdentityResolver(store=sqlite_store, platform=platform, settings=settings)
    assert again.resolve_user(user()) == first
    assert again.resolve_user(user(COMPANY, "001")) == company
    assert requests_seen(platform_server) == asked and again.platform_calls == 0


def test_the_store_keeps_only_the_keyed_hash_and_an_encrypted_number(resolver, sqlite_store, settings, tmp_path):
    resolver.resolve_user(user())
    with sqlite_store.read() as conn:
        row = conn.execute(select(identity_users)).mappings().one()
    assert row["pii_hash"] == pii_hash(PERSON, "test-pii-key") and row["pii_hash"] != pii_hash(PERSON, "other-key")
    assert row["masked"] == codes.mask_id_number(PERSON)
    assert decrypt(row["cipher"], "test-pii-key") == PERSON and decrypt(row["cipher"], "other-key") is None
    sqlite_store.dispose()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("tongban.db*"))
    assert PERSON.encode() not in raw


def test_unknown_user_is_reported_masked_and_the_negative_answer_is_cached(resolver, platform_server):
    control(platform_server, unknown=[PERSON])
    with pytest.raises(IdentityUnresolved) as caught:
        resolver.resolve_user(user())
    assert caught.value.kind == "unknown" and "404" in caught.value.rule
    assert PERSON not in str(caught.value) and codes.mask_id_number(PERSON) in str(caught.value)
    asked = requests_seen(platform_server)
    with pytest.raises(IdentityUnresolved):
        resolver.resolve_user(user())
    assert requests_seen(platform_server) == asked


def test_prefetched_applicants_are_asked_about_once_and_resolve_as_if_asked_one_by_one(
        resolver, sqlite_store, platform, settings, platform_server):
    # Ingest's look-ahead asks about a window's applicants concurrently; resolve then finds every answer ready,
    # the unknown one included, and nobody is asked twice.
    control(platform_server, unknown=[OTHER_PERSON])
    one_by_one = IdentityResolver(store=sqlite_store, platform=platform, settings=settings)
    expected = one_by_one.resolve_user(user(COMPANY, "001", kind="2"))
    before = requests_seen(platform_server)
    resolver.prefetch([user(), user(OTHER_PERSON), user(COMPANY, "001", kind="2"), user()])
    assert requests_seen(platform_server) - before == 2  # the company was cached already; PERSON once
    resolved = resolver.resolve_user(user())
    with pytest.raises(IdentityUnresolved) as caught:
        resolver.resolve_user(user(OTHER_PERSON))
    assert caught.value.kind == "unknown"
    assert resolver.resolve_user(user(COMPANY, "001", kind="2")) == expected
    assert requests_seen(platform_server) - before == 2 and re.fullmatch(r"U\d{16}", resolved)
    # A person's number where a credit code belongs is never asked about: resolve flags it, as before.
    resolver.prefetch([user(make_id_number("500101", date(1970, 1, 1), 5, "M"), "111", kind="2")])
    assert requests_seen(platform_server) - before == 2


def test_ambiguous_user_is_not_guessed(resolver, platform_server):
    control(platform_server, ambiguous=[COMPANY])
    with pytest.raises(IdentityUnresolved) as caught:
        resolver.resolve_user(user(COMPANY, "001", kind="2"))
    assert caught.value.kind == "ambiguous" and "409" in caught.value.rule


def test_throttling_is_retried_after_retry_after_then_raised_as_transient(resolver, sqlite_store, platform_server):
    control(platform_server, throttle_next=1, retry_after=0)
    assert resolver.resolve_user(user()).startswith("U")
    assert httpx.get(f"{platform_server.url}/_sandbox/users").json()["throttled"] == 1

    control(platform_server, throttle_next=1000, retry_after=0)
    with pytest.raises(IdentityThrottled) as caught:
        resolver.resolve_user(user(OTHER_PERSON))
    assert OTHER_PERSON not in str(caught.value)
    with sqlite_store.read() as conn:  # nothing is cached for a number the service never answered
        assert conn.execute(select(identity_users.c.pii_hash)
                            .where(identity_users.c.pii_hash == pii_hash(OTHER_PERSON, "test-pii-key"))).first() is None


def test_one_account_with_two_identity_numbers_is_flagged_until_accepted(resolver, sqlite_store):
    resolver.resolve_user(user(account_id="acc-1"))
    with pytest.raises(IdentityConflict) as caught:
        resolver.resolve_user(user(OTHER_PERSON, account_id="acc-1"))
    assert caught.value.kind == ACCOUNT_CHANGED_NUMBER and OTHER_PERSON not in str(caught.value)
    [conflict] = list_conflicts(sqlite_store)
    assert conflict["kind"] == ACCOUNT_CHANGED_NUMBER and conflict["id"] == caught.value.conflict_id
    with pytest.raises(IdentityConflict):  # flagged once, still blocking
        resolver.resolve_user(user(OTHER_PERSON, account_id="acc-1"))
    assert len(list_conflicts(sqlite_store)) == 1
    assert "accepted" in accept_conflict(sqlite_store, conflict["id"], operator="ops")
    assert resolver.resolve_user(user(OTHER_PERSON, account_id="acc-1")).startswith("U")


def test_one_identity_number_behind_several_accounts_is_flagged(resolver, sqlite_store):
    resolver.resolve_user(user(account_id="acc-1"))
    with pytest.raises(IdentityConflict) as caught:
        resolver.resolve_user(user(account_id="acc-2"))
    assert caught.value.kind == NUMBER_SHARED_BY_ACCOUNTS
    assert "acc-1" in caught.value.rule and "acc-2" in caught.value.rule
    # The same account in another legacy system is not a conflict.
    other = normalise_user("legacy-b", {"id_type": "111", "id_number": PERSON, "account_id": "acc-9"})
    assert resolver.resolve_user(other).startswith("U")


@pytest.mark.parametrize("record", [
    {"id_type": "001", "id_number": PERSON, "kind": "2"},   # a person's number in the credit-code field
    {"id_type": "111", "id_number": PERSON, "kind": "2"},   # an ID card for a legal person
])
def test_a_natural_persons_number_where_a_credit_code_belongs_is_flagged_and_cannot_be_accepted(
        resolver, sqlite_store, platform_server, record):
    before = requests_seen(platform_server)
    with pytest.raises(IdentityConflict) as caught:
        resolver.resolve_user(normalise_user("legacy-a", record))
    assert caught.value.kind == PERSON_NUMBER_FOR_LEGAL_PERSON
    assert requests_seen(platform_server) == before  # not sent to the platform as a guess
    assert "cannot be accepted" in accept_conflict(sqlite_store, caught.value.conflict_id, operator="ops")


def test_user_records_are_normalised_and_bad_ones_named_without_the_number():
    typed = PERSON[:-1] + PERSON[-1].lower() if PERSON.endswith("X") else PERSON
    full_width = typed.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    assert user(full_width, phone="138-0013-8000").id_number == PERSON
    assert user(PERSON, phone="+8613800138000").phone == "13800138000"
    wrong = PERSON[:17] + ("0" if PERSON[17] != "0" else "1")
    with pytest.raises(IdentityUnresolved) as caught:
        user(wrong)
    assert caught.value.field == "id_number" and "check digit" in caught.value.rule and wrong not in str(caught.value)
    with pytest.raises(IdentityUnresolved) as caught:
        user("E12345678", "414")
    assert caught.value.kind == "unsupported" and caught.value.field == "id_type"
    with pytest.raises(IdentityUnresolved) as caught:
        user(phone="12345")
    assert caught.value.field == "phone"
    assert PERSON not in repr(user())


def test_an_operator_lookup_is_masked_and_itself_a_ledger_event(resolver, sqlite_store, settings):
    from tongban.store.tables import ledger

    resolver.resolve_user(user(account_id="acc-1"))
    result = lookup(sqlite_store, PERSON.lower(), operator="alice", purpose="complaint 42", settings=settings)
    assert result["found"] and result["status"] == "resolved" and result["id_number"] == codes.mask_id_number(PERSON)
    assert result["accounts"] == [{"system": "legacy-a", "account_id": "acc-1"}]
    assert PERSON not in json.dumps(result)
    with sqlite_store.read() as conn:
        [event] = conn.execute(select(ledger.c.detail).where(ledger.c.hop == "pii_lookup")).scalars().all()
    detail = json.loads(event)
    assert detail["operator"] == "alice" and detail["purpose"] == "complaint 42" and PERSON not in event
    lookup(sqlite_store, OTHER_PERSON, operator="bob", settings=settings)
    with sqlite_store.read() as conn:
        assert len(conn.execute(select(ledger.c.seq).where(ledger.c.hop == "pii_lookup")).all()) == 2


def test_identity_cli_lookup_prints_masked_and_records_the_lookup(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tongban.cli.identity import app

    monkeypatch.setenv("TONGBAN_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["lookup", PERSON, "--operator", "carol", "--purpose", "test"])
    assert result.exit_code == 0, result.output
    assert codes.mask_id_number(PERSON) in result.output and PERSON not in result.output
    assert "never seen" in result.output
    wrong = PERSON[:17] + ("0" if PERSON[17] != "0" else "1")
    bad = CliRunner().invoke(app, ["lookup", wrong])
    assert bad.exit_code == 2 and "check digit" in bad.output and wrong not in bad.output
