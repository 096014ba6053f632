"""Console users: a name, a role and a scrypt hash of the password, kept in the store.

Roles: `auditor` reads everything the console shows; `operator` may also replay parked and quarantined items.
Passwords are hashed with scrypt (hashlib, RFC 7914; n=2**14, r=8, p=1, a random 16-byte salt) and compared in
constant time; the password itself is never stored, logged or taken from a command-line flag. `authenticate`
spends the same work on an unknown name as on a wrong password, and answers only "yes" or "no"."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from sqlalchemy import select

from tongban.bus.envelope import utcnow
from tongban.store import Store

from .tables import console_users

AUDITOR, OPERATOR = "auditor", "operator"
ROLES = (AUDITOR, OPERATOR)
MIN_PASSWORD = 8
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
_N, _R, _P = 2 ** 14, 8, 1


class UserError(ValueError):
    """A user that cannot be added as asked; the message names the field and the rule."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def may_replay(self) -> bool:
        return self.role == OPERATOR


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY = hash_password("not a password anyone has", salt=b"\0" * 16)


def add_user(store: Store, name: str, role: str, password: str, *, replace: bool = False) -> User:
    """Add a user (or, with `replace`, set an existing user's role and password)."""
    if not _NAME.match(name or ""):
        raise UserError(f"user name {name!r}: letters, digits and . _ @ - only, at most 100 characters")
    if role not in ROLES:
        raise UserError(f"user {name}: role {role!r} is not one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"user {name}: the password is shorter than {MIN_PASSWORD} characters")
    hashed, now = hash_password(password), utcnow()
    with store.write() as conn:
        exists = conn.execute(select(console_users.c.name).where(console_users.c.name == name)).first()
        if exists and not replace:
            raise UserError(f"user {name} exists already (--replace sets a new role and password)")
        if exists:
            conn.execute(console_users.update().where(console_users.c.name == name)
                         .values(role=role, password_hash=hashed, updated_at=now))
        else:
            conn.execute(console_users.insert().values(name=name, role=role, password_hash=hashed, created_at=now,
                                                       updated_at=now))
    return User(name, role)


def get_user(store: Store, name: str) -> User | None:
    with store.read() as conn:
        row = conn.execute(select(console_users.c.name, console_users.c.role)
                           .where(console_users.c.name == name)).first()
    return User(row.name, row.role) if row and row.role in ROLES else None


def list_users(store: Store) -> list[dict]:
    with store.read() as conn:
        rows = conn.execute(select(console_users.c.name, console_users.c.role, console_users.c.created_at,
                                   console_users.c.updated_at).order_by(console_users.c.name)).mappings()
        return [dict(r) for r in rows]


def authenticate(store: Store, name: str, password: str) -> User | None:
    """The user when the name and password match, else None (the same work either way: no hint which was wrong)."""
    with store.read() as conn:
        row = conn.execute(select(console_users).where(console_users.c.name == name)).mappings().first()
    stored = row["password_hash"] if row else _DUMMY
    ok = check_password(password, stored)
    if not ok or row is None or row["role"] not in ROLES:
        return None
    return User(row["name"], row["role"])


# Sandbox users: public passwords, for the sandbox only (`tongban sandbox up|demo` creates them; see the README).
SANDBOX_USERS = {"auditor": (AUDITOR, "sandbox-auditor"), "operator": (OPERATOR, "sandbox-operator")}


def ensure_sandbox_users(store: Store) -> dict[str, tuple[str, str]]:
    """Create the sandbox auditor and operator when they are missing; returns name → (role, password).
    Refused outside the sandbox: these passwords are public."""
    from tongban.settings import current

    if not current().is_sandbox:
        raise UserError("the sandbox users have public passwords: they exist only with TONGBAN_ENV=sandbox")
    for name, (role, password) in SANDBOX_USERS.items():
        if get_user(store, name) is None:
            add_user(store, name, role, password)
    return dict(SANDBOX_USERS)
