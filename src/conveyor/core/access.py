"""API keys and roles: who may do what, and how a presented key is recognised.

A key is `cvk_<key id>_<secret>`. Only its SHA-256 digest is stored. The key id is not
secret: it finds the stored record, and the digest is then compared in constant time, so
neither the lookup nor the comparison leaks the secret through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

KEY_PREFIX = "cvk"
_KEY_ID_BYTES = 6
_SECRET_BYTES = 32


class Role(StrEnum):
    READ = "read"  # see the tenant's own jobs
    WRITE = "write"  # also submit, cancel, retry and delete them
    ADMIN = "admin"  # everything, across tenants: queues, keys

    def allows(self, required: Role) -> bool:
        return _RANK[self] >= _RANK[required]


_RANK = {Role.READ: 0, Role.WRITE: 1, Role.ADMIN: 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """A stored key: everything but the secret."""

    id: str
    name: str
    tenant: str
    role: Role
    digest: str
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the tenant its jobs belong to and what it may do."""

    tenant: str
    role: Role
    key_id: str  # "bootstrap" for CONVEYOR_ADMIN_KEY

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class MintedKey:
    """A new key: `plaintext` is shown once and never stored."""

    plaintext: str
    key_id: str
    digest: str


def mint_key() -> MintedKey:
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    plaintext = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return MintedKey(plaintext=plaintext, key_id=key_id, digest=digest_of(plaintext))


def digest_of(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def key_id_of(plaintext: str) -> str | None:
    """The key id inside a presented key, or None when it is not shaped like one."""
    prefix, _, rest = plaintext.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or len(key_id) != 2 * _KEY_ID_BYTES or not secret:
        return None
    if any(character not in "0123456789abcdef" for character in key_id):
        return None
    return key_id


def matches(plaintext: str, digest: str) -> bool:
    """Constant-time comparison of a presented key with a stored digest."""
    return hmac.compare_digest(digest_of(plaintext), digest)
