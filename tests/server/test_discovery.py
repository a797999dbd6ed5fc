"""Discovery document, JWKS and health endpoints."""

from __future__ import annotations

import httpx
from _server_helpers import ISSUER, AdminApi

from stepguard.core.scopes import BUILTIN_SCOPES


async def test_health(server_client: httpx.AsyncClient) -> None:
    r = await server_client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_discovery_document(server_client: httpx.AsyncClient, admin: AdminApi) -> None:
    env = await admin.default_environment_id()
    r = await server_client.get("/.well-known/stepguard-configuration")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["issuer"] == ISSUER
    assert doc["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert doc["environment_id"] == env and doc["environment_name"] == "default"
    assert doc["token_type"] == "elevated+jwt"
    assert doc["token_header"] == "X-Elevated-Access-Token"
    assert "EdDSA" in doc["signing_alg_values_supported"]
    assert doc["enforcement"] is True and doc["mfa_enabled"] is True
    assert doc["methods"] == sorted(doc["methods"]) and "sms_otp" not in doc["methods"]
    assert {"email_otp", "totp", "passkey", "recovery_code"} <= set(doc["methods"])
    assert set(doc["scopes"]) == BUILTIN_SCOPES
    assert doc["scopes"]["wallet:export"] == {
        "required": True,
        "token_behavior": "single_use",
        "ttl_seconds": 300,
        "allowed_methods": None,
        "max_age": None,
        "bind_transaction": False,
    }
    assert doc["scopes"]["user:update"]["token_behavior"] == "time_bound"
    assert doc["scopes"]["user:update"]["ttl_seconds"] == 600
    assert doc["sdk_base"] == f"{ISSUER}/sdk/{env}"
    # The JWKS it points to answers.
    jwks = await server_client.get(doc["jwks_uri"].removeprefix(ISSUER))
    assert jwks.status_code == 200 and jwks.json()["keys"]


async def test_discovery_follows_policy_and_environment(
    server_client: httpx.AsyncClient, admin: AdminApi
) -> None:
    shop = await admin.create_environment(
        "shop",
        policy={
            "enabled_methods": ["totp", "sms_otp"],
            "custom_scopes": ["shop:refund"],
            "scopes": {"shop:refund": {"token_behavior": "single_use", "ttl_seconds": 90}},
        },
    )
    r = await server_client.get(
        "/.well-known/stepguard-configuration", params={"environment_id": shop["id"]}
    )
    doc = r.json()
    assert doc["environment_id"] == shop["id"] and doc["environment_name"] == "shop"
    assert doc["methods"] == ["sms_otp", "totp"]
    assert doc["scopes"]["shop:refund"]["ttl_seconds"] == 90
    await admin.set_policy(shop["id"], {"enforcement": False})
    r = await server_client.get(
        "/.well-known/stepguard-configuration", params={"environment_id": shop["id"]}
    )
    assert r.json()["enforcement"] is False  # no stale cache after an update
    # The default environment is unaffected.
    r = await server_client.get("/.well-known/stepguard-configuration")
    assert "shop:refund" not in r.json()["scopes"] and r.json()["enforcement"] is True


async def test_discovery_unknown_environment(server_client: httpx.AsyncClient) -> None:
    for value in ("env_nope", "", "x" * 500):
        r = await server_client.get(
            "/.well-known/stepguard-configuration", params={"environment_id": value}
        )
        assert r.status_code == 404 and r.json()["code"] == "not_found", value
