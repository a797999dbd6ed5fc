"""Bring your own auth: the app backend's signed assertion exchanged for an elevated token."""

from __future__ import annotations

import uuid

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from stepguard.client import CodeUsed, InvalidExternalAuth
from stepguard.core.tokens import unverified_claims


def assertion(key: ECKey, subject: str, now: float, scope: str = "wallet:export") -> str:
    claims = {
        "sub": subject,
        "scope": scope,
        "jti": uuid.uuid4().hex,
        "iat": int(now),
        "exp": int(now) + 120,
    }
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key, algorithms=["ES256"])


async def test_external_assertion_is_exchanged_and_stored(sg) -> None:
    user = await sg.user()
    key = ECKey.generate_key("P-256", parameters={"kid": "app-1"})
    await sg.admin(
        "PUT",
        f"/admin/environments/{sg.environment_id}/external-jwks",
        {"jwks": {"keys": [key.as_dict(private=False)]}},
    )
    client = sg.client(user)
    signed = assertion(key, user.id, sg.clock.now(), "wallet:export user:update")
    token = await sg.r(client.step_up_auth.request_external_auth_elevated_token(signed))
    assert set(unverified_claims(token)["scope"].split()) == {"wallet:export", "user:update"}
    assert await sg.r(client.step_up_auth.is_step_up_required("user:update")) is False
    with pytest.raises((CodeUsed, InvalidExternalAuth)):  # the same jti twice
        await sg.r(client.step_up_auth.request_external_auth_elevated_token(signed))
    stranger = ECKey.generate_key("P-256", parameters={"kid": "app-1"})
    with pytest.raises(InvalidExternalAuth):  # signed by a key the environment does not trust
        await sg.r(
            client.step_up_auth.request_external_auth_elevated_token(
                assertion(stranger, user.id, sg.clock.now())
            )
        )
    other = await sg.user("bob@example.com")
    with pytest.raises(InvalidExternalAuth):  # vouching for another user
        await sg.r(
            client.step_up_auth.request_external_auth_elevated_token(
                assertion(key, other.id, sg.clock.now())
            )
        )
