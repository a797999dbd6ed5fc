"""Signing keys in the database: the active key signs, retired keys verify until their tokens expire.

``stepguard keys rotate`` (or the admin API) retires the active key and creates a new one that
signs at once. A retired key stays in the JWKS for :data:`RETIRED_KEY_GRACE` seconds — longer than
any elevated token can live plus the guards' clock skew — then leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stepguard.core.clock import Clock
from stepguard.core.keys import JwsAlgorithm, KeyMaterial, SecretBox, generate_key
from stepguard.core.policy import MAX_TTL_SECONDS
from stepguard.core.tokens import MAX_LEEWAY, TokenKeySet, TokenSigner
from stepguard.server.audit import audit
from stepguard.server.db import Database, SigningKey

__all__ = ["RETIRED_KEY_GRACE", "Keyring"]

RETIRED_KEY_GRACE = MAX_TTL_SECONDS + MAX_LEEWAY
_PURPOSE = "signing_key"
#: How long a process trusts its cached view of the key table (another process may rotate).
_CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Snapshot:
    loaded_at: float
    signer: TokenSigner
    keyset: TokenKeySet
    jwks: dict[str, Any]


class Keyring:
    def __init__(self, db: Database, box: SecretBox, clock: Clock, algorithm: JwsAlgorithm):
        self._db = db
        self._box = box
        self._clock = clock
        self._algorithm = algorithm
        self._snapshot: _Snapshot | None = None

    async def ensure_key(self) -> None:
        """Create the first key when there is none."""
        async with self._db.transaction() as s:
            active = await self._active(s)
            if active is None:
                s.add(self._new_row())
        self._snapshot = None

    async def rotate(self, *, actor: str = "admin") -> str:
        """Retire the active key and start signing with a new one; returns the new ``kid``.

        The rotation is audited (an admin action) in the same transaction.
        """
        now = self._clock.now()
        async with self._db.transaction() as s:
            retired = []
            for row in (
                await s.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None)))
            ).all():
                row.retired_at = now
                retired.append(row.kid)
            row = self._new_row()
            s.add(row)
            kid = row.kid
            audit(
                s,
                now=now,
                actor=actor,
                action="signing_key.rotate",
                details={"kid": kid, "retired": retired},
            )
        self._snapshot = None
        return kid

    async def signer(self) -> TokenSigner:
        return (await self._load()).signer

    async def keyset(self) -> TokenKeySet:
        return (await self._load()).keyset

    async def jwks(self) -> dict[str, Any]:
        return (await self._load()).jwks

    def _new_row(self) -> SigningKey:
        material = generate_key(self._algorithm)
        return SigningKey(
            kid=material.kid,
            alg=material.alg.value,
            private_sealed=self._box.seal(material.private_pem, purpose=_PURPOSE + material.kid),
            public_jwk=material.public_jwk(),
            created_at=self._clock.now(),
            retired_at=None,
        )

    async def _active(self, s: AsyncSession) -> SigningKey | None:
        stmt = (
            select(SigningKey)
            .where(SigningKey.retired_at.is_(None))
            .order_by(SigningKey.created_at.desc())
        )
        return (await s.scalars(stmt)).first()

    async def _load(self) -> _Snapshot:
        now = self._clock.now()
        snap = self._snapshot
        if snap is not None and now - snap.loaded_at < _CACHE_SECONDS:
            return snap
        async with self._db.session() as s:
            rows = (await s.scalars(select(SigningKey).order_by(SigningKey.created_at))).all()
        active = [r for r in rows if r.retired_at is None]
        if not active:
            await self.ensure_key()
            return await self._load()
        current = active[-1]
        live = [r for r in rows if r.retired_at is None or now - r.retired_at < RETIRED_KEY_GRACE]
        keyset = TokenKeySet()
        for r in live:
            keyset.add_jwk(r.public_jwk)
        pem = self._box.open(current.private_sealed, purpose=_PURPOSE + current.kid)
        signer = TokenSigner(KeyMaterial(current.kid, JwsAlgorithm(current.alg), pem))
        jwks = {"keys": [dict(r.public_jwk) for r in reversed(live)]}
        self._snapshot = _Snapshot(loaded_at=now, signer=signer, keyset=keyset, jwks=jwks)
        return self._snapshot
