"""Unified users (统一用户体系): legacy applicants → the platform's unified user id.

- `IdentityResolver(store=, platform=).resolve(snapshot, record) -> user_id` (the pipeline's call),
  `.resolve_user(LegacyUser)`; `IdentityResolver.for_mapping(mapping, store=, platform=)` honours the
  mapping file's `identity: {resolve: true, account: <JMESPath of the legacy account id>}`.
- Errors: `IdentityUnresolved` / `IdentityConflict` (quarantine, stage "identity"), `IdentityThrottled`
  (transient: the run fails before its watermark moves).
- Operators: `lookup(...)` (a `pii_lookup` ledger event), `list_conflicts`, `accept_conflict`,
  `retry_unresolved(...)` (the retry DAG's callable).
"""
from .operations import accept_conflict, list_conflicts, lookup, retry_unresolved
from .protect import decrypt, encrypt, pii_hash
from .resolver import (
    ACCOUNT_CHANGED_NUMBER, CONFLICT_KINDS, NUMBER_SHARED_BY_ACCOUNTS, PERSON_NUMBER_FOR_LEGAL_PERSON,
    IdentityResolver,
)
from .users import (
    IdentityConflict, IdentityError, IdentityThrottled, IdentityUnresolved, LegacyUser, normalise_user,
    user_from_snapshot,
)

__all__ = [
    "ACCOUNT_CHANGED_NUMBER", "CONFLICT_KINDS", "NUMBER_SHARED_BY_ACCOUNTS", "PERSON_NUMBER_FOR_LEGAL_PERSON",
    "IdentityConflict", "IdentityError", "IdentityResolver", "IdentityThrottled", "IdentityUnresolved",
    "LegacyUser", "accept_conflict", "decrypt", "encrypt", "list_conflicts", "lookup", "normalise_user",
    "pii_hash", "retry_unresolved", "user_from_snapshot",
]
