"""API tokens: created once and shown once, stored as SHA-256, checked in constant time.

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
from sqlmodel import Session, col, select

from analytics.db import ensure_schema
from analytics.errors import AftershockError
from rollout.models import ApiToken

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
    ensure_schema(engine)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name.strip(), scopes=",".join(granted), prefix=secret[:10], token_hash=_digest(secret)
    )
    with Session(engine) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
    return row, secret


def revoke_token(engine: sa.Engine, token_id: int) -> ApiToken:
    ensure_schema(engine)
    with Session(engine) as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            raise TokenError(f"no token {token_id}")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
            session.add(row)
            session.commit()
            session.refresh(row)
        return row


def list_tokens(engine: sa.Engine) -> list[ApiToken]:
    ensure_schema(engine)
    with Session(engine) as session:
        return list(session.exec(select(ApiToken).order_by(col(ApiToken.id))).all())


def authenticate(engine: sa.Engine, token: str) -> Principal | None:
    """The caller a bearer token stands for, or None (unknown or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    digest = _digest(token)
    with Session(engine) as session:
        row = session.exec(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is None or row.revoked_at is not None or row.id is None:
        return None
    if not hmac.compare_digest(row.token_hash, digest):
        return None
    return Principal(row.id, row.name, frozenset(row.scopes.split(",")))
