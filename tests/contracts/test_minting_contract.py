"""What every verify endpoint mints, refuses and records, per method, on SQLite and PostgreSQL.

* The answer is ``{elevated_access_token, scopes, expires_at, single_use}``; the token verifies
  against the server's JWKS and carries exactly DESIGN.md's claims, ``amr`` from
  ``core/assurance.py`` for the method, TTL and single-use from the scope policy (most restrictive
  of several scopes).
* Unknown scopes: 422 ``invalid_scopes``; a scope the method may not serve: 403
  ``method_not_allowed``; neither spends the response.
* Every attempt leaves one audit event (method, outcome, user, IP, scopes) readable through the
  admin API, and the secret never reaches it.
* The consecutive-failure cap: after 100 failures the authenticator stays locked however long one
  waits (NIST 800-63B §3.2.2), reached over HTTP with the clock moved past each delay.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from typing import Any

import httpx
import pytest
from _driver import MethodDriver

from stepguard.core.assurance import ASSURANCE, MethodName
from stepguard.core.tokens import TokenKeySet, verify_elevated_token

#: RFC 8176 ``amr`` per method (``email`` has no registered value), pinned here so a change in
#: ``core/assurance.py`` shows up as a contract change.
AMR = {
    "email_otp": ["otp", "email"],
    "sms_otp": ["otp", "sms"],
    "totp": ["otp", "swk"],
    "recovery_code": ["kba"],
    "passkey": ["hwk", "user", "pop"],
    "ethereum": ["pop", "swk"],
    "solana": ["pop", "swk"],
}
CLAIMS = {
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


def _header(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


async def _keys(driver: MethodDriver) -> TokenKeySet:
    r = await driver.ctx.client.get("/.well-known/jwks.json")
    assert r.status_code == 200, r.text
    keys = TokenKeySet()
    for jwk in r.json()["keys"]:
        keys.add_jwk(jwk)
    return keys


async def _set_policy(driver: MethodDriver, changes: dict[str, Any]) -> None:
    await driver.ctx.admin.set_policy(driver.ctx.user.environment_id, changes)
    driver.ctx.clock.advance(3)  # past the server's 2 s policy cache


async def _attempt(driver: MethodDriver) -> tuple[Any, Any]:
    await driver.next_success()
    attempt = await driver.begin()
    assert not isinstance(attempt, httpx.Response), attempt.text
    return attempt, await driver.good(attempt)


async def test_mints_the_designed_token(driver: MethodDriver) -> None:
    user = driver.ctx.user
    method = MethodName(driver.name)
    driver.scopes = ["wallet:export", "user:update"]
    r = await driver.succeed()
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"elevated_access_token", "scopes", "expires_at", "single_use"} <= set(body)
    token = body["elevated_access_token"]
    header = _header(token)
    assert (header["typ"], header["alg"]) == ("elevated+jwt", "EdDSA")
    now = driver.ctx.clock.now()
    verified = verify_elevated_token(
        token,
        keys=await _keys(driver),
        expected_issuer="http://test",
        expected_audience=user.environment_id,
        expected_scope=["wallet:export", "user:update"],
        expected_subject=user.user_id,
        expected_session=user.session_id,
        now=now,
    )
    claims = verified.claims.to_dict()
    assert set(claims) == CLAIMS
    assert claims["scope"] == "user:update wallet:export" and body["scopes"] == [
        "user:update",
        "wallet:export",
    ]
    assert list(claims["amr"]) == AMR[driver.name] == list(ASSURANCE[method].amr)
    # wallet:* is single-use for 300 s; with user:update (time-bound 600 s) the stricter wins.
    assert claims["single_use"] is True is body["single_use"]
    assert claims["exp"] - claims["iat"] == 300 and body["expires_at"] == claims["exp"]
    assert claims["iat"] == int(now) and claims["auth_time"] <= claims["iat"]
    assert len(claims["jti"]) >= 16

    # The scope policy sets behaviour and lifetime.
    await _set_policy(
        driver, {"scopes": {"user:update": {"token_behavior": "time_bound", "ttl_seconds": 120}}}
    )
    driver.scopes = ["user:update"]
    r = await driver.succeed()
    assert r.status_code == 200, r.text
    again = r.json()
    claims = verify_elevated_token(
        again["elevated_access_token"],
        keys=await _keys(driver),
        expected_issuer="http://test",
        expected_audience=user.environment_id,
        now=driver.ctx.clock.now(),
    ).claims.to_dict()
    assert (claims["exp"] - claims["iat"], claims["single_use"]) == (120, False)
    assert again["single_use"] is False and again["scopes"] == ["user:update"]
    assert claims["jti"] != verified.jti


@pytest.mark.parametrize("scopes", [["nope:nope"], ["wallet:export", "wallet:exportx"]])
async def test_unknown_scopes_are_refused_and_spend_nothing(
    driver: MethodDriver, scopes: list[str]
) -> None:
    attempt, response = await _attempt(driver)
    driver.scopes = scopes
    r = await driver.submit(attempt, response)
    assert r.status_code == 422 and r.json()["code"] == "invalid_scopes", r.text
    driver.scopes = ["wallet:export"]
    r = await driver.submit(attempt, response)
    assert r.status_code == 200, r.text
    # The refusal is an attempt too: audited once, with the method and the user.
    events = await driver.ctx.admin.audit(driver.ctx.user.environment_id, limit=1000)
    refused = [e for e in events if e["outcome"] == "invalid_scopes"]
    assert len(refused) == 1 and refused[0]["method"] == driver.name, refused
    assert refused[0]["user_id"] == driver.ctx.user.user_id


async def test_scope_not_allowed_for_the_method(driver: MethodDriver) -> None:
    other = "totp" if driver.name == "passkey" else "passkey"
    await _set_policy(driver, {"scopes": {"user:update": {"allowed_methods": [other]}}})
    attempt, response = await _attempt(driver)
    driver.scopes = ["user:update"]
    r = await driver.submit(attempt, response)
    assert r.status_code == 403 and r.json()["code"] == "method_not_allowed", r.text
    driver.scopes = ["wallet:export"]
    r = await driver.submit(attempt, response)
    assert r.status_code == 200, r.text


def _strings(value: Any) -> list[str]:
    """Every string inside a JSON-like value (dict values and list items, recursively)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _secrets(response: Any) -> list[str]:
    """The secret part of a response: a code, or the signature inside an assertion."""
    if isinstance(response, dict):
        return [s for k, v in response.items() for s in (_secrets(v) if k != "signature" else [v])]
    return [response] if isinstance(response, str) else []


async def test_every_attempt_is_audited_without_the_secret(driver: MethodDriver) -> None:
    user, admin = driver.ctx.user, driver.ctx.admin
    seen = {e["id"] for e in await admin.audit(user.environment_id, limit=1000)}
    bad_attempt = await driver.begin()
    bad = await driver.bad(bad_attempt)
    assert (await driver.submit(bad_attempt, bad)).status_code == 400
    attempt, good = await _attempt(driver)
    r = await driver.submit(attempt, good)
    assert r.status_code == 200, r.text
    events = [
        e
        for e in reversed(await admin.audit(user.environment_id, limit=1000))
        if e["id"] not in seen
    ]
    verifies = [e for e in events if e["action"].endswith(".verify")]
    # One event per attempt, in order: the failure (with its code) and the success.
    assert len(verifies) == 2, verifies
    assert verifies[0]["outcome"] not in ("success", "") and verifies[1]["outcome"] == "success"
    for e in verifies:
        assert e["method"] == driver.name and e["user_id"] == user.user_id
        assert e["actor"] == "user" and e["ip"] == "127.0.0.1"
        assert e["scopes"] == ["wallet:export"]
    minted = [e for e in events if e["action"] == "elevation.mint"]
    assert len(minted) == 1 and minted[0]["method"] == driver.name
    assert minted[0]["details"]["jti"] and minted[0]["scopes"] == ["wallet:export"]
    # Nothing secret anywhere in the trail: not the right response, the wrong one, the token.
    leaves = _strings(events)
    secrets = [*_secrets(good), *_secrets(bad), r.json()["elevated_access_token"]]
    for secret in secrets:
        found = re.compile(r"(?<![0-9A-Za-z])" + re.escape(secret) + r"(?![0-9A-Za-z])")
        assert not any(found.search(leaf) for leaf in leaves), secret


@pytest.mark.slow
async def test_hard_cap_of_100_consecutive_failures(driver: MethodDriver) -> None:
    """Fail, wait out every delay, fail again: at 100 failures waiting no longer helps."""
    ctx = driver.ctx
    # The delays add up to days: a session that outlives them (the longest one allowed).
    long = await ctx.admin.create_session(
        ctx.user.user_id, ctx.user.environment_id, ttl_seconds=30 * 86_400
    )
    ctx.user = dataclasses.replace(
        ctx.user, session_id=long["id"], session_token=long["session_token"]
    )
    failures = 0
    while failures < 100:
        r = await driver.fail_once()
        if r.status_code == 429:
            assert r.json()["code"] == "rate_limited" and not r.json().get("locked"), (
                failures,
                r.text,
            )
            driver.ctx.clock.advance(int(r.headers["Retry-After"]) + 1)
            await driver.resend()  # codes die while one waits; a fresh one does not reset
            continue
        assert r.status_code == 400, (failures, r.text)
        failures += 1
    ctx.clock.advance(7 * 86_400)  # far longer than any growing delay
    r = await driver.succeed()
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "rate_limited" and r.json()["locked"] is True
