"""API tokens: created once and shown once, stored as SHA-256, checked in constant time.

``list_tokens`` (from :mod:`rollout.store`) lists them for ``aftershock tokens list``.

Tokens are 256 random bits, so a fast hash is enough (no password stretching needed): the
database never holds a usable secret, and a lookup by hash costs one index probe.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from analytics.errors import AftershockError
from rollout.models import ApiToken
from rollout.store import find_token, list_tokens, mark_token_revoked, save_token

SCOPES = ("read", "ramp", "admin")  # each includes the ones before it
TOKEN_PREFIX = "ash_"


class TokenError(AftershockError):
    """A token cannot be created or revoked as asked."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, name and granted scopes."""

    token_id: int
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return any(SCOPES.index(s) >= SCOPES.index(scope) for s in self.scopes)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: sa.Engine, name: str, scopes: Iterable[str]) -> tuple[ApiToken, str]:
    """A new token; the returned secret is the only copy there will ever be."""
    granted = sorted(set(scopes), key=SCOPES.index) if set(scopes) <= set(SCOPES) else None
    if not granted:
        raise TokenError(f"scopes must be among {', '.join(SCOPES)}, got {sorted(set(scopes))}")
    if not name.strip():
        raise TokenError("a token needs a name (who or what uses it)")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name.strip(), scopes=",".join(granted), prefix=secret[:10], token_hash=_digest(secret)
    )
    return save_token(engine, row), secret


def revoke_token(engine: sa.Engine, token_id: int) -> ApiToken:
    row = mark_token_revoked(engine, token_id, datetime.now(UTC))
    if row is None:
        raise TokenError(f"no token {token_id}")
    return row


def authenticate(engine: sa.Engine, token: str) -> Principal | None:
    """The caller a bearer token stands for, or None (unknown or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    digest = _digest(token)
    row = find_token(engine, digest)
    if row is None or row.revoked_at is not None or row.id is None:
        return None
    if not hmac.compare_digest(row.token_hash, digest):
        return None
    return Principal(row.id, row.name, frozenset(row.scopes.split(",")))


__all__ = [
    "SCOPES",
    "Principal",
    "TokenError",
    "authenticate",
    "create_token",
    "list_tokens",
    "revoke_token",
]
