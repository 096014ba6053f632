"""Resolving applicants against the platform's unified user service (统一用户体系): 证件号码 → unified user id.

Order of checks for one user: the number fits the applicant's kind → the legacy account agrees with what
was seen before → the cache (no platform call on a hit, negative answers included) → the platform (at
most once per number; throttling is retried honouring Retry-After, then raised as transient).

Resolutions are cached in the tongban store under the HMAC of the number (tongban.identity.protect);
the resolver also keeps a per-run memo so a run touches the store at most once per applicant.

`prefetch` lets ingest ask about the applicants of the records just ahead concurrently (one round trip each, up to
PREFETCH_CONCURRENCY at once) instead of one after another: the answers go into the store and the memo exactly as
`resolve` would put them, and `resolve`, still called record by record in order, finds them there. It asks only
what `resolve` would ask next (a number not cached, of a kind that fits), so each number still reaches the service
at most once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

import jmespath
from sqlalchemy import delete, select

from tongban import codes
from tongban.audit import ledger
from tongban.bus.envelope import utcnow
from tongban.audit.ledger import LedgerEvent
from tongban.mapping.errors import MappingFileError
from tongban.platform.errors import PlatformRejected, PlatformTransient
from tongban.retry import RetryPolicy
from tongban.settings import Settings, current
from tongban.store import Store
from tongban.store.state import dialect_insert

from .protect import encrypt, pii_hash
from .tables import identity_accounts, identity_conflicts, identity_users, identity_waiting
from .users import (
    CREDIT_CODE, ID_CARD, NATURAL_PERSON, IdentityConflict, IdentityError, IdentityThrottled, IdentityUnresolved,
    LegacyUser, user_from_snapshot,
)

log = logging.getLogger("tongban.identity")

RESOLVED, UNKNOWN, AMBIGUOUS, INVALID = "resolved", "unknown", "ambiguous", "invalid"
OPEN, ACCEPTED = "open", "accepted"

# Conflict kinds (flagged, never guessed).
ACCOUNT_CHANGED_NUMBER = "account_changed_number"        # one legacy account, two identity numbers over time
NUMBER_SHARED_BY_ACCOUNTS = "number_shared_by_accounts"  # one identity number behind several legacy accounts
PERSON_NUMBER_FOR_LEGAL_PERSON = "person_number_for_legal_person"  # 居民身份证号码 where a credit code belongs
CONFLICT_KINDS = (ACCOUNT_CHANGED_NUMBER, NUMBER_SHARED_BY_ACCOUNTS, PERSON_NUMBER_FOR_LEGAL_PERSON)

_STATUS_RULES = {
    UNKNOWN: "the unified user service knows no user with this number (404)",
    AMBIGUOUS: "the unified user service holds several users with this number (409)",
}
IDENTITY_KEYS = {"resolve", "account"}
PREFETCH_CONCURRENCY = 8  # unified user service round trips in flight at once (as ingest's numbering)


def _is_id_card_number(number: str) -> bool:
    try:
        codes.parse_id_number(number)
        return True
    except codes.CodeError:
        return False


def ask_platform(platform: Any, id_type: str, number: str, retry: RetryPolicy) -> dict:
    """One signed call to the unified user service, through the platform client's one signing path and retry
    (with the resolver's own policy: throttling is worth a longer wait than the client's quick retry)."""
    return platform.resolve_user(id_type, number, retry=retry)


class IdentityResolver:
    def __init__(self, *, store: Store, platform: Any, settings: Settings | None = None,
                 account_path: str | None = None, attempts: int = 4, max_wait: float = 5.0):
        self.store, self.platform = store, platform
        self.key = (settings or current()).pii_key
        self.account_path = jmespath.compile(account_path) if account_path else None
        # Throttling (429 + Retry-After) is retried inside the call, up to `max_wait` per wait; a Retry-After
        # longer than that is raised at once as IdentityThrottled (the run's later retry honours it).
        self.retry = RetryPolicy(attempts=attempts, initial_wait=0.1, max_wait=max_wait)
        self._memo: dict[str, tuple[str, str | None, str | None]] = {}   # pii_hash → (status, user_id, reason)
        self._bindings: set[tuple[str, str, str]] = set()                 # (system, account, pii_hash) checked
        # Answers `prefetch` got that the memo does not keep (INVALID ones): `resolve_user` takes each once, so a
        # prefetched number is not asked about again. Cleared by every prefetch: at most one window's worth.
        self._prefetched: dict[str, tuple[str, str | None, str | None]] = {}
        self._calls_lock = threading.Lock()
        self.platform_calls = 0

    @classmethod
    def for_mapping(cls, mapping, *, store: Store, platform: Any) -> "IdentityResolver | None":
        """The resolver a mapping file asks for with `identity: {resolve: true, account: <path>}`, or None."""
        node = mapping.doc.get("identity")
        if node is None:
            return None
        line = mapping.doc.key_lines.get("identity") if hasattr(mapping.doc, "key_lines") else None
        if not isinstance(node, dict) or set(node) - IDENTITY_KEYS:
            raise MappingFileError(mapping.path_text, line,
                                   f"identity: allowed keys are {', '.join(sorted(IDENTITY_KEYS))} (resolve: true|false)")
        if not isinstance(node.get("resolve", False), bool):
            raise MappingFileError(mapping.path_text, line, "identity.resolve must be true or false")
        if not node.get("resolve"):
            return None
        return cls(store=store, platform=platform, account_path=node.get("account"))

    # --- the pipeline's entry point -----------------------------------------------------------------
    def resolve(self, snapshot: dict, record: dict | None = None) -> str:
        """The unified user id of the snapshot's applicant, or IdentityError (the case waits in quarantine)."""
        user = None
        try:
            user = self.user_of(snapshot, record)
            return self.resolve_user(user)
        except (IdentityConflict, IdentityUnresolved) as exc:
            if user is not None and (isinstance(exc, IdentityConflict) or exc.kind in _STATUS_RULES):
                self._wait(user, snapshot.get("source_key"), exc)
            raise

    def user_of(self, snapshot: dict, record: dict | None = None) -> LegacyUser:
        """The snapshot's applicant as a LegacyUser (with the legacy account, when the mapping names its path);
        IdentityUnresolved when the number or its type cannot be resolved at all."""
        account = None
        if self.account_path is not None and record is not None:
            found = self.account_path.search(record)
            account = None if found in (None, "") else str(found)
        return user_from_snapshot(snapshot, account)

    def prefetch(self, users: Iterable[LegacyUser]) -> None:
        """Ask the unified user service about `users` concurrently, ahead of their `resolve` (see the module
        docstring). Only users `resolve` would ask about next: a number neither in the memo nor in the store's
        cache, of a kind that fits; users with a legacy account are left to `resolve` (its account check comes
        before any call, and may refuse one). A failed call (throttled, unavailable) is not retried here: `resolve`
        meets the number as before and asks, or raises, itself."""
        self._prefetched.clear()
        wanted: dict[str, LegacyUser] = {}
        for user in users:
            if user.account_id is not None or self._kind_rule(user) is not None:
                continue
            digest = pii_hash(user.id_number, self.key)
            if digest not in self._memo:
                wanted.setdefault(digest, user)
        if not wanted:
            return
        with self.store.read() as conn:
            for row in conn.execute(select(identity_users.c.pii_hash, identity_users.c.status, identity_users.c.user_id,
                                           identity_users.c.reason).where(identity_users.c.pii_hash.in_(list(wanted)))):
                if row.status != INVALID:  # as _cached: an INVALID answer is asked again
                    self._memo[row.pii_hash] = (row.status, row.user_id, row.reason)
                    del wanted[row.pii_hash]
        if not wanted:
            return

        def ask(item: tuple[str, LegacyUser]):
            digest, user = item
            try:
                return digest, user, self._answer(user)
            except IdentityThrottled:
                return digest, user, None

        with ThreadPoolExecutor(min(PREFETCH_CONCURRENCY, len(wanted))) as pool:
            answers = [a for a in pool.map(ask, wanted.items()) if a[2] is not None]
        if not answers:
            return
        with self.store.write() as conn:
            self._save_all(conn, [(user, digest, *answer) for digest, user, answer in answers])
        for digest, _user, answer in answers:
            if answer[0] != INVALID:
                self._memo[digest] = answer
            else:
                self._prefetched[digest] = answer

    # --- one user -----------------------------------------------------------------------------------
    def resolve_user(self, user: LegacyUser) -> str:
        digest = pii_hash(user.id_number, self.key)
        self._check_kind(user, digest)
        if user.account_id is not None:
            self._check_account(user, digest)
        status, user_id, reason = self._cached(digest)
        if status is None:
            answer = self._prefetched.pop(digest, None)
            status, user_id, reason = answer if answer is not None else self._ask(user, digest)
        if status == RESOLVED:
            return user_id
        raise IdentityUnresolved(status, "application.applicant_id_number",
                                 f"applicant {user.masked}: {reason or _STATUS_RULES.get(status, status)}")

    def refresh(self, digest: str, number: str, id_type: str) -> str:
        """Ask the platform again about a number (retry of an unknown/ambiguous one); returns the new status."""
        self._memo.pop(digest, None)
        user = LegacyUser(system="", id_type=id_type, id_number=number)
        return self._ask(user, digest)[0]

    # --- checks -------------------------------------------------------------------------------------
    @staticmethod
    def _kind_rule(user: LegacyUser) -> str | None:
        """Why the number does not fit the applicant's kind, or None when it does."""
        if user.id_type == ID_CARD and user.kind not in (None, NATURAL_PERSON):
            return (f"applicant {user.masked}: 证件类型 {ID_CARD} (居民身份证) for an applicant of kind {user.kind} "
                    f"(a legal person): a 统一社会信用代码 belongs here")
        if user.id_type == CREDIT_CODE and _is_id_card_number(user.id_number):
            return f"applicant {user.masked}: the 统一社会信用代码 field holds a natural person's 居民身份证号码"
        return None

    def _check_kind(self, user: LegacyUser, digest: str) -> None:
        rule = self._kind_rule(user)
        if rule is None:
            return
        self._flag(PERSON_NUMBER_FOR_LEGAL_PERSON, user, [digest], [user.account_id] if user.account_id else [],
                   rule, acceptable=False)

    def _check_account(self, user: LegacyUser, digest: str) -> None:
        binding = (user.system, user.account_id, digest)
        if binding in self._bindings:
            return
        with self.store.read() as conn:
            numbers = {r[0] for r in conn.execute(select(identity_accounts.c.pii_hash).where(
                identity_accounts.c.system == user.system, identity_accounts.c.account_id == user.account_id))}
            accounts = {r[0] for r in conn.execute(select(identity_accounts.c.account_id).where(
                identity_accounts.c.system == user.system, identity_accounts.c.pii_hash == digest))}
        if digest not in numbers:
            # Record what was seen before judging it: the conflict must stay visible even if nobody replays.
            with self.store.write() as conn:
                conn.execute(identity_accounts.insert().values(system=user.system, account_id=user.account_id,
                                                               pii_hash=digest, first_seen=utcnow()))
        other_numbers = numbers - {digest}
        if other_numbers:
            self._flag(ACCOUNT_CHANGED_NUMBER, user, sorted(other_numbers | {digest}), [user.account_id],
                       f"legacy account {user.account_id} of {user.system} now carries {user.masked}, but carried "
                       f"{len(other_numbers)} other identity number(s) before")
        other_accounts = accounts - {user.account_id}
        if other_accounts:
            self._flag(NUMBER_SHARED_BY_ACCOUNTS, user, [digest], sorted(other_accounts | {user.account_id}),
                       f"applicant {user.masked} is behind {len(other_accounts) + 1} legacy accounts of {user.system}: "
                       f"{', '.join(sorted(other_accounts | {user.account_id}))}")
        self._bindings.add(binding)

    def _flag(self, kind: str, user: LegacyUser, hashes: list[str], accounts: list[str], detail: str,
              acceptable: bool = True) -> None:
        """Record the conflict once; raise unless an operator accepted it."""
        key = hashlib.sha256(json.dumps([kind, user.system, sorted(accounts), sorted(hashes)]).encode()).hexdigest()
        with self.store.write() as conn:
            row = conn.execute(select(identity_conflicts.c.id, identity_conflicts.c.status)
                               .where(identity_conflicts.c.conflict_key == key)).first()
            if row is None:
                conflict_id = conn.execute(identity_conflicts.insert().values(
                    conflict_key=key, kind=kind, system=user.system, account_ids=json.dumps(sorted(accounts)),
                    pii_hashes=json.dumps(sorted(hashes)), detail=detail, status=OPEN, at=utcnow()
                )).inserted_primary_key[0]
                status = OPEN
                ledger.append(conn, [LedgerEvent("identity_conflict", {"conflict_id": conflict_id, "kind": kind,
                                                                       "detail": codes.mask_text(detail)},
                                                 system=user.system)])
                log.warning("identity conflict #%s (%s): %s", conflict_id, kind, codes.mask_text(detail))
            else:
                conflict_id, status = row
        if status == ACCEPTED and acceptable:
            return
        raise IdentityConflict(kind, "application.applicant_id_number",
                               f"identity conflict #{conflict_id} ({kind}): {detail}", conflict_id)

    # --- cache and platform -------------------------------------------------------------------------
    def _cached(self, digest: str) -> tuple[str | None, str | None, str | None]:
        hit = self._memo.get(digest)
        if hit is not None:
            return hit
        with self.store.read() as conn:
            row = conn.execute(select(identity_users.c.status, identity_users.c.user_id, identity_users.c.reason)
                               .where(identity_users.c.pii_hash == digest)).first()
        if row is None or row.status == INVALID:
            return None, None, None
        self._memo[digest] = (row.status, row.user_id, row.reason)
        return self._memo[digest]

    def _ask(self, user: LegacyUser, digest: str) -> tuple[str, str | None, str | None]:
        status, user_id, reason = self._answer(user)
        self._save(user, digest, status, user_id, reason)
        if status != INVALID:
            self._memo[digest] = (status, user_id, reason)
        return status, user_id, reason

    def _answer(self, user: LegacyUser) -> tuple[str, str | None, str | None]:
        """The unified user service's answer about one user, as (status, user_id, reason); IdentityThrottled when
        it is unavailable. Nothing is saved here (thread-safe: `prefetch` calls it from several threads)."""
        user_id = reason = None
        with self._calls_lock:
            self.platform_calls += 1
        try:
            body = ask_platform(self.platform, user.id_type, user.id_number, self.retry)
            status, user_id = RESOLVED, str(body.get("user_id") or "") or None
            if user_id is None:
                status, reason = INVALID, "the unified user service answered without a user id"
        except PlatformTransient as exc:
            raise IdentityThrottled(f"unified user service unavailable for applicant {user.masked}: "
                                    f"{codes.mask_text(str(exc))}", exc.retry_after) from None
        except PlatformRejected as exc:
            status = {404: UNKNOWN, 409: AMBIGUOUS}.get(exc.status, INVALID)
            reason = _STATUS_RULES.get(status) or f"refused by the unified user service (HTTP {exc.status}): " \
                                                  f"{codes.mask_text(exc.reason)}"
        return status, user_id, reason

    def _save(self, user: LegacyUser, digest: str, status: str, user_id: str | None, reason: str | None) -> None:
        with self.store.write() as conn:
            self._save_in(conn, user, digest, status, user_id, reason)

    def _save_all(self, conn, answers: list[tuple[LegacyUser, str, str, str | None, str | None]]) -> None:
        """Save answers, `(user, digest, status, user_id, reason)` each, with one upsert statement (a user seen
        before keeps its first_seen; the prefetch's window: one round trip, not a read and a write per user)."""
        now = utcnow()
        rows = list({digest: dict(pii_hash=digest, id_type=user.id_type, status=status, user_id=user_id,
                                  reason=reason, updated_at=now, first_seen=now, masked=user.masked,
                                  cipher=encrypt(user.id_number, self.key))
                     for user, digest, status, user_id, reason in answers}.values())
        insert = dialect_insert(conn, identity_users)
        refreshed = ("id_type", "status", "user_id", "reason", "updated_at", "masked", "cipher")  # not first_seen
        conn.execute(insert.on_conflict_do_update(index_elements=[identity_users.c.pii_hash],
                                                  set_={name: insert.excluded[name] for name in refreshed}), rows)

    def _save_in(self, conn, user: LegacyUser, digest: str, status: str, user_id: str | None,
                 reason: str | None) -> None:
        self._save_all(conn, [(user, digest, status, user_id, reason)])

    def _wait(self, user: LegacyUser, source_key: str | None, exc: IdentityError) -> None:
        if not source_key:
            return
        digest = pii_hash(user.id_number, self.key)
        with self.store.write() as conn:
            conn.execute(delete(identity_waiting).where(identity_waiting.c.system == user.system,
                                                        identity_waiting.c.source_key == source_key))
            conn.execute(identity_waiting.insert().values(
                system=user.system, source_key=source_key, pii_hash=digest,
                conflict_id=getattr(exc, "conflict_id", None), reason=exc.kind, at=utcnow()))
