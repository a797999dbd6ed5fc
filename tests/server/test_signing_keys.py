"""Signing keys: JWKS shape, tokens minted by the server verify through the JWKS, rotation with a
grace period, EdDSA and ES256, private keys sealed at rest."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from _server_helpers import ISSUER, AdminApi, UserSession
from fastapi import FastAPI
from sqlalchemy import select

from stepguard.core.assurance import MethodName
from stepguard.core.clock import FixedClock
from stepguard.core.errors import ElevatedTokenExpired
from stepguard.core.keys import JwsAlgorithm, load_private_key
from stepguard.core.methods.base import verified
from stepguard.core.tokens import TokenKeySet, UnknownKeyId, verify_elevated_token
from stepguard.server.db import SigningKey
from stepguard.server.keyring import RETIRED_KEY_GRACE


@pytest.fixture(params=["EdDSA", "ES256"])
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"token_algorithm": request.param}


def header_of(token: str) -> dict[str, Any]:
    seg = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))))


async def mint(app: FastAPI, us: UserSession, scopes: list[str] | None = None) -> str:
    """An elevated token from the server's own mint path (a TOTP factor verified just now)."""
    service = app.state.service
    session = await service.authenticate(us.environment_id, us.session_token)
    factor = verified(MethodName.TOTP, now=service.clock.now(), credential_id="cred_test")
    minted = await service.mint(session, factor, scopes or ["wallet:export"])
    return str(minted.token)


async def jwks_keyset(client: httpx.AsyncClient) -> tuple[dict[str, Any], TokenKeySet]:
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200
    doc = r.json()
    return doc, TokenKeySet.from_jwks(doc)


def check(token: str, keys: TokenKeySet, us: UserSession, now: float) -> Any:
    return verify_elevated_token(
        token,
        keys=keys,
        expected_issuer=ISSUER,
        expected_audience=us.environment_id,
        expected_subject=us.user_id,
        expected_scope="wallet:export",
        now=now,
    )


async def test_jwks_shape_and_minted_token(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    settings_overrides: dict[str, Any],
    clock: FixedClock,
) -> None:
    alg = settings_overrides["token_algorithm"]
    doc, keys = await jwks_keyset(server_client)
    assert list(doc) == ["keys"] and len(doc["keys"]) == 1
    jwk = doc["keys"][0]
    assert jwk["alg"] == alg and jwk["use"] == "sig" and jwk["kid"]
    if alg == "EdDSA":
        assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519") and set(jwk) == {
            "kty",
            "crv",
            "x",
            "kid",
            "alg",
            "use",
        }
    else:
        assert (jwk["kty"], jwk["crv"]) == ("EC", "P-256") and set(jwk) == {
            "kty",
            "crv",
            "x",
            "y",
            "kid",
            "alg",
            "use",
        }
    r = await server_client.get("/.well-known/jwks.json")
    assert "max-age" in r.headers.get("cache-control", "")

    token = await mint(server_app, user_session)
    assert header_of(token) == {"alg": alg, "typ": "elevated+jwt", "kid": jwk["kid"]}
    out = check(token, keys, user_session, clock.now())
    c = out.claims
    assert (c.iss, c.aud, c.sub, c.sid) == (
        ISSUER,
        user_session.environment_id,
        user_session.user_id,
        user_session.session_id,
    )
    assert c.single_use is True and c.exp - c.iat == 300 and c.amr == ("otp", "swk")
    assert set(out.raw) == {
        "iss",
        "aud",
        "sub",
        "sid",
        "jti",
        "iat",
        "exp",
        "auth_time",
        "scope",
        "amr",
        "single_use",
    }


async def test_rotation_grace_period(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    admin: AdminApi,
    user_session: UserSession,
    clock: FixedClock,
) -> None:
    old_token = await mint(server_app, user_session)
    old_kid = header_of(old_token)["kid"]

    r = await admin.request("POST", "/admin/keys/rotate")
    new_kid = r.json()["kid"]
    assert new_kid != old_kid

    # The new key signs at once.
    new_token = await mint(server_app, user_session)
    assert header_of(new_token)["kid"] == new_kid
    doc, keys = await jwks_keyset(server_client)
    assert [k["kid"] for k in doc["keys"]] == [new_kid, old_kid]
    # A token of the old key still verifies through the JWKS.
    check(old_token, keys, user_session, clock.now())
    check(new_token, keys, user_session, clock.now())

    # Just inside the grace period the old key is still published...
    clock.advance(RETIRED_KEY_GRACE - 1)
    doc, keys = await jwks_keyset(server_client)
    assert [k["kid"] for k in doc["keys"]] == [new_kid, old_kid]
    with pytest.raises(ElevatedTokenExpired):  # ...though every token it signed has expired
        check(old_token, keys, user_session, clock.now())
    # ...and once it has passed (plus the keyring's 5 s cache), the old key leaves the JWKS.
    clock.advance(1 + 5)
    doc, keys = await jwks_keyset(server_client)
    assert [k["kid"] for k in doc["keys"]] == [new_kid]
    with pytest.raises(UnknownKeyId):
        check(old_token, keys, user_session, clock.now())
    # Minting keeps working with the new key.
    assert header_of(await mint(server_app, user_session))["kid"] == new_kid


async def test_grace_outlives_every_token() -> None:
    from stepguard.core.policy import MAX_TTL_SECONDS
    from stepguard.core.tokens import MAX_LEEWAY

    assert RETIRED_KEY_GRACE >= MAX_TTL_SECONDS + MAX_LEEWAY


async def test_private_keys_are_sealed_at_rest(
    server_app: FastAPI, admin: AdminApi, settings_overrides: dict[str, Any]
) -> None:
    await admin.request("POST", "/admin/keys/rotate")
    service = server_app.state.service
    async with service.db.session() as s:
        rows = (await s.scalars(select(SigningKey))).all()
    assert len(rows) == 2
    for row in rows:
        sealed = row.private_sealed
        assert sealed.startswith("v1.")
        assert "PRIVATE KEY" not in sealed and "BEGIN" not in sealed
        raw = base64.urlsafe_b64decode(sealed[3:])
        assert b"PRIVATE KEY" not in raw and b"-----" not in raw
        assert "d" not in row.public_jwk
        # It opens with the server secret (bound to its kid) and matches the published key.
        pem = service.box.open(sealed, purpose="signing_key" + row.kid)
        key = load_private_key(JwsAlgorithm(row.alg), pem, row.kid)
        assert key.as_dict(private=False)["x"] == row.public_jwk["x"]
        assert row.alg == settings_overrides["token_algorithm"]
        # Moved to another key's row, it does not open (the kid is associated data).
        other = next(r for r in rows if r.kid != row.kid)
        with pytest.raises(Exception) as e:
            service.box.open(sealed, purpose="signing_key" + other.kid)
        assert getattr(e.value, "code", "") == "secret_key_error"
    # And the SQLite file itself holds no PEM private key.
    url = service.db.url
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        await service.db.dispose()
        data = b"".join(p.read_bytes() for p in Path(path).parent.glob(Path(path).name + "*"))
        assert b"PRIVATE KEY" not in data and len(data) > 0


async def test_rotation_is_seen_by_another_process_after_its_cache(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    make_server: Any,
    clock: FixedClock,
    settings_overrides: dict[str, Any],
) -> None:
    doc, _ = await jwks_keyset(server_client)
    first = doc["keys"][0]["kid"]
    async with make_server(**settings_overrides) as other:
        new_kid = await other.state.service.keyring.rotate()
    clock.advance(6)  # past the 5 s cache of the first app
    doc, _ = await jwks_keyset(server_client)
    assert [k["kid"] for k in doc["keys"]] == [new_kid, first]
    assert (await server_app.state.service.keyring.signer()).kid == new_kid
