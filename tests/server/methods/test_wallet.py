"""External wallets over HTTP: SIWE (eth-account) and SIWS (PyNaCl) linking and step-up.

Signatures come from the real libraries over the exact message the server issued; the attacks
(replayed nonce, expired message, another signer, a message edited before signing, a weak Solana
key, an embedded wallet, a re-auth factor for an MFA user) are each refused with a stable code.
"""

from __future__ import annotations

import asyncio
from typing import Any

import base58
import httpx
import pytest
from _server_helpers import AdminApi, UserSession, client_for
from fastapi import FastAPI

from stepguard.core.clock import FixedClock
from stepguard.server.db import Credential, new_id

from ._flows import (
    EthWallet,
    SoftwareAuthenticator,
    SolWallet,
    claims_of,
    elevated_token,
    link_wallet,
    register_passkey,
    sdk,
)

WALLETS = [pytest.param(EthWallet, id="ethereum"), pytest.param(SolWallet, id="solana")]


@pytest.fixture
async def fresh_user(admin: AdminApi) -> UserSession:
    env = await admin.default_environment_id()
    user = await admin.create_user(env)
    session = await admin.create_session(user["id"], env)
    return UserSession(env, user["id"], session["id"], session["session_token"])


async def challenge(
    client: httpx.AsyncClient, user: UserSession, wallet_id: str | None = None
) -> httpx.Response:
    body = {} if wallet_id is None else {"wallet_id": wallet_id}
    return await client.post(
        sdk(user.environment_id, "/wallets/challenge"), json=body, headers=user.headers
    )


async def verify(
    client: httpx.AsyncClient,
    user: UserSession,
    challenge_id: str,
    signature: str,
    scopes: list[str] | None = None,
) -> httpx.Response:
    return await client.post(
        sdk(user.environment_id, "/wallets/verify"),
        json={
            "challenge_id": challenge_id,
            "signature": signature,
            "requested_scopes": ["wallet:export"] if scopes is None else scopes,
        },
        headers=user.headers,
    )


@pytest.mark.parametrize("make", WALLETS)
async def test_link_then_step_up(
    server_client: httpx.AsyncClient, fresh_user: UserSession, make: Any
) -> None:
    wallet = make()
    linked = await link_wallet(server_client, fresh_user.environment_id, fresh_user.headers, wallet)
    assert linked["format"] == "blockchain" and linked["type"] == wallet.chain
    assert linked["address"] == wallet.address and linked["verified"] is True

    r = await challenge(server_client, fresh_user)
    assert r.status_code == 200, r.text
    ch = r.json()
    assert ch["wallet_id"] == linked["id"] and ch["address"] == wallet.address
    chain_word = "Ethereum" if wallet.chain == "ethereum" else "Solana"
    assert ch["message"].startswith(
        f"test wants you to sign in with your {chain_word} account:\n{wallet.address}\n"
    )
    assert "\nURI: http://test\n" in ch["message"] and "\nNonce: " in ch["message"]

    r = await verify(server_client, fresh_user, ch["challenge_id"], wallet.sign(ch["message"]))
    assert r.status_code == 200, r.text
    claims = claims_of(r.json()["elevated_access_token"])
    assert claims["sub"] == fresh_user.user_id and claims["scope"] == "wallet:export"
    assert claims["amr"] == ["pop", "swk"]


@pytest.mark.parametrize("make", WALLETS)
async def test_nonce_is_single_use(
    server_client: httpx.AsyncClient, fresh_user: UserSession, make: Any
) -> None:
    wallet = make()
    await link_wallet(server_client, fresh_user.environment_id, fresh_user.headers, wallet)
    ch = (await challenge(server_client, fresh_user)).json()
    sig = wallet.sign(ch["message"])
    assert (await verify(server_client, fresh_user, ch["challenge_id"], sig)).status_code == 200
    r = await verify(server_client, fresh_user, ch["challenge_id"], sig)
    assert r.status_code == 400 and r.json()["code"] == "code_used"
    # A failed signature spends the nonce too.
    ch = (await challenge(server_client, fresh_user)).json()
    r = await verify(server_client, fresh_user, ch["challenge_id"], make().sign(ch["message"]))
    assert r.json()["code"] == "invalid_signature"
    r = await verify(server_client, fresh_user, ch["challenge_id"], wallet.sign(ch["message"]))
    assert r.json()["code"] == "code_used"


async def test_concurrent_verifies_give_one_token(
    server_client: httpx.AsyncClient, fresh_user: UserSession
) -> None:
    wallet = EthWallet()
    await link_wallet(server_client, fresh_user.environment_id, fresh_user.headers, wallet)
    ch = (await challenge(server_client, fresh_user)).json()
    sig = wallet.sign(ch["message"])
    results = await asyncio.gather(
        *(verify(server_client, fresh_user, ch["challenge_id"], sig) for _ in range(4))
    )
    assert sorted(r.status_code for r in results) == [200, 400, 400, 400]


@pytest.mark.parametrize("make", WALLETS)
async def test_nonce_expires(
    server_client: httpx.AsyncClient, fresh_user: UserSession, clock: FixedClock, make: Any
) -> None:
    wallet = make()
    await link_wallet(server_client, fresh_user.environment_id, fresh_user.headers, wallet)
    ch = (await challenge(server_client, fresh_user)).json()
    assert 0 < ch["expires_at"] - clock.now() <= 600
    assert "\nExpiration Time: " in ch["message"]
    clock.advance(ch["expires_at"] - clock.now())
    r = await verify(server_client, fresh_user, ch["challenge_id"], wallet.sign(ch["message"]))
    assert r.status_code == 400 and r.json()["code"] == "code_expired"


@pytest.mark.parametrize("make", WALLETS)
@pytest.mark.parametrize(
    "edit",
    [
        ("test wants", "evil.test wants"),
        ("URI: http://test", "URI: http://evil.test"),
        ("Chain ID: ", "Chain ID: 5"),
        ("Issued At: 2023", "Issued At: 2024"),
        ("Nonce: ", "Nonce: x"),
    ],
    ids=["domain", "uri", "chain", "issued-at", "nonce"],
)
async def test_a_message_edited_before_signing_is_refused(
    server_client: httpx.AsyncClient, fresh_user: UserSession, make: Any, edit: tuple[str, str]
) -> None:
    """The server verifies over the message it issued: any field the wallet changed fails."""
    wallet = make()
    await link_wallet(server_client, fresh_user.environment_id, fresh_user.headers, wallet)
    ch = (await challenge(server_client, fresh_user)).json()
    edited = ch["message"].replace(*edit, 1)
    assert edited != ch["message"]
    r = await verify(server_client, fresh_user, ch["challenge_id"], wallet.sign(edited))
    assert r.status_code == 400 and r.json()["code"] == "invalid_signature"


async def test_domain_and_uri_follow_the_public_url(
    make_server: Any, admin_headers: dict[str, str]
) -> None:
    async with (
        make_server(public_url="https://wallet.example.com:8443/base") as app,
        client_for(app) as client,
    ):
        admin = AdminApi(client, admin_headers)
        env = await admin.default_environment_id()
        uid = (await admin.create_user(env))["id"]
        ses = await admin.create_session(uid, env)
        user = UserSession(env, uid, ses["id"], ses["session_token"])
        wallet = SolWallet()
        await link_wallet(client, env, user.headers, wallet)
        ch = (await challenge(client, user)).json()
        assert ch["message"].startswith("wallet.example.com:8443 wants you to sign in")
        assert "\nURI: https://wallet.example.com:8443\n" in ch["message"]
        assert (
            await verify(client, user, ch["challenge_id"], wallet.sign(ch["message"]))
        ).status_code == 200


@pytest.mark.parametrize("make", WALLETS)
async def test_link_with_another_key_is_refused(
    server_client: httpx.AsyncClient, fresh_user: UserSession, make: Any
) -> None:
    wallet, other = make(), make()
    env = fresh_user.environment_id
    ch = (
        await server_client.post(
            sdk(env, "/wallets/link/challenge"),
            json={"chain": wallet.chain, "address": wallet.address},
            headers=fresh_user.headers,
        )
    ).json()
    r = await server_client.post(
        sdk(env, "/wallets/link"),
        json={"challenge_id": ch["challenge_id"], "signature": other.sign(ch["message"])},
        headers=fresh_user.headers,
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_signature"
    creds = (await server_client.get(sdk(env, "/credentials"), headers=fresh_user.headers)).json()[
        "credentials"
    ]
    assert creds == []


SMALL_ORDER_KEYS = [
    bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000000"),  # identity
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),  # order 8
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # order 2
]


@pytest.mark.parametrize("key", SMALL_ORDER_KEYS, ids=["identity", "order-8", "order-2"])
async def test_small_order_solana_keys_are_refused_at_linking(
    server_client: httpx.AsyncClient, fresh_user: UserSession, key: bytes
) -> None:
    r = await server_client.post(
        sdk(fresh_user.environment_id, "/wallets/link/challenge"),
        json={"chain": "solana", "address": base58.b58encode(key).decode()},
        headers=fresh_user.headers,
    )
    assert r.status_code == 422 and r.json()["code"] == "validation_error"


@pytest.mark.parametrize(
    "body",
    [
        {"chain": "ethereum", "address": "0x123"},
        {
            "chain": "ethereum",
            "address": "0x5cE9454909639D2D17A3F753ce7d93fa0b9aB12E",
        },  # bad EIP-55
        {
            "chain": "ethereum",
            "address": "0x5ce9454909639D2D17A3F753ce7d93fa0b9aB12E",
            "chain_id": 999,
        },
        {
            "chain": "ethereum",
            "address": "0x5ce9454909639D2D17A3F753ce7d93fa0b9aB12E",
            "chain_id": "1",
        },
        {"chain": "solana", "address": "0OIl"},
        {
            "chain": "solana",
            "address": "11111111111111111111111111111111",
            "chain_id": "solana:moon",
        },
        {"chain": "bitcoin", "address": "bc1q"},
    ],
)
async def test_bad_addresses_and_chains(
    server_client: httpx.AsyncClient, fresh_user: UserSession, body: dict[str, Any]
) -> None:
    r = await server_client.post(
        sdk(fresh_user.environment_id, "/wallets/link/challenge"),
        json=body,
        headers=fresh_user.headers,
    )
    assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text


async def test_linking_needs_credential_link_once_verified(
    server_client: httpx.AsyncClient, server_app: FastAPI, user_session: UserSession
) -> None:
    wallet = EthWallet()
    env = user_session.environment_id
    r = await server_client.post(
        sdk(env, "/wallets/link/challenge"),
        json={"chain": "ethereum", "address": wallet.address},
        headers=user_session.headers,
    )
    assert r.status_code == 401 and r.json()["code"] == "elevated_token_required"
    token = await elevated_token(server_app, user_session.session_token, env, ["credential:link"])
    linked = await link_wallet(server_client, env, user_session.headers, wallet, token=token)
    assert linked["chain"] == "ethereum"


async def test_a_wallet_links_to_one_user_only(
    server_client: httpx.AsyncClient, admin: AdminApi, fresh_user: UserSession
) -> None:
    wallet = EthWallet()
    env = fresh_user.environment_id
    await link_wallet(server_client, env, fresh_user.headers, wallet)
    uid = (await admin.create_user(env))["id"]
    ses = await admin.create_session(uid, env)
    r = await server_client.post(
        sdk(env, "/wallets/link/challenge"),
        json={"chain": "ethereum", "address": wallet.address.lower()},
        headers={"Authorization": f"Bearer {ses['session_token']}"},
    )
    assert r.status_code == 409 and r.json()["code"] == "conflict"


async def _add_wallet(app: FastAPI, user: UserSession, source: str, address: str) -> str:
    service = app.state.service
    async with service.db.transaction() as s:
        cred = Credential(
            id=new_id("cred_"),
            environment_id=user.environment_id,
            user_id=user.user_id,
            kind="wallet",
            value=address,
            chain="ethereum",
            verified=True,
            sign_in_enabled=True,
            is_default=False,
            data={"source": source, "chain_id": 1},
            created_at=service.clock.now(),
            verified_at=service.clock.now(),
        )
        s.add(cred)
    return cred.id


@pytest.mark.parametrize("source", ["embedded", "custodial", None])
async def test_embedded_or_custodial_wallets_never_qualify(
    server_client: httpx.AsyncClient,
    server_app: FastAPI,
    fresh_user: UserSession,
    source: str | None,
) -> None:
    wallet = EthWallet()
    wallet_id = await _add_wallet(server_app, fresh_user, source or "", wallet.address)
    r = await challenge(server_client, fresh_user, wallet_id)
    assert r.status_code == 403 and r.json()["code"] == "method_not_allowed"
    r = await challenge(server_client, fresh_user)
    assert r.status_code == 400 and r.json()["code"] == "no_methods_available"
    # An external wallet linked by signature is picked over the embedded one.
    ext = EthWallet()
    env = fresh_user.environment_id
    token = await elevated_token(server_app, fresh_user.session_token, env, ["credential:link"])
    linked = await link_wallet(server_client, env, fresh_user.headers, ext, token=token)
    assert (await challenge(server_client, fresh_user)).json()["wallet_id"] == linked["id"]


async def test_another_users_wallet_or_challenge(
    server_client: httpx.AsyncClient, admin: AdminApi, fresh_user: UserSession
) -> None:
    env = fresh_user.environment_id
    wallet = EthWallet()
    linked = await link_wallet(server_client, env, fresh_user.headers, wallet)
    uid = (await admin.create_user(env))["id"]
    ses = await admin.create_session(uid, env)
    other = UserSession(env, uid, ses["id"], ses["session_token"])
    r = await challenge(server_client, other, linked["id"])
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    ch = (await challenge(server_client, fresh_user)).json()
    r = await verify(server_client, other, ch["challenge_id"], wallet.sign(ch["message"]))
    assert r.status_code == 400 and r.json()["code"] == "challenge_not_found"


async def test_mfa_precedence_refuses_wallet_reauth(
    server_client: httpx.AsyncClient, fresh_user: UserSession
) -> None:
    env = fresh_user.environment_id
    wallet = EthWallet()
    await link_wallet(server_client, env, fresh_user.headers, wallet)
    auth = SoftwareAuthenticator("test", "http://test")
    # The wallet is a verified credential: the passkey needs credential:link, earned by the wallet.
    ch = (await challenge(server_client, fresh_user)).json()
    r = await verify(
        server_client,
        fresh_user,
        ch["challenge_id"],
        wallet.sign(ch["message"]),
        ["credential:link"],
    )
    assert r.status_code == 200
    await register_passkey(
        server_client, env, fresh_user.headers, auth, token=r.json()["elevated_access_token"]
    )
    ch = (await challenge(server_client, fresh_user)).json()
    r = await verify(server_client, fresh_user, ch["challenge_id"], wallet.sign(ch["message"]))
    assert r.status_code == 403 and r.json()["code"] == "mfa_required"


async def test_every_attempt_is_audited(
    server_client: httpx.AsyncClient, admin: AdminApi, fresh_user: UserSession
) -> None:
    wallet = SolWallet()
    env = fresh_user.environment_id
    linked = await link_wallet(server_client, env, fresh_user.headers, wallet)
    ch = (await challenge(server_client, fresh_user)).json()
    await verify(server_client, fresh_user, ch["challenge_id"], SolWallet().sign(ch["message"]))
    ch = (await challenge(server_client, fresh_user)).json()
    await verify(server_client, fresh_user, ch["challenge_id"], wallet.sign(ch["message"]))
    ch = (await challenge(server_client, fresh_user)).json()
    await verify(
        server_client, fresh_user, ch["challenge_id"], wallet.sign(ch["message"]), ["no-such:scope"]
    )
    events = await admin.audit(env, action="solana.verify")
    assert sorted(e["outcome"] for e in events) == [
        "invalid_scopes",
        "invalid_signature",
        "success",
    ]
    assert all(
        e["details"]["credential_id"] == linked["id"]
        for e in events
        if e["outcome"] != "invalid_scopes"
    )
    assert all(e["user_id"] == fresh_user.user_id and e["ip"] for e in events)
    assert [e["outcome"] for e in await admin.audit(env, action="solana.link")] == ["success"]
    assert all("signature" not in str(e["details"]) or "***" in str(e["details"]) for e in events)


BAD_BODIES: list[Any] = [
    None,
    [],
    {},
    {"challenge_id": "chl_x"},
    {"challenge_id": 1, "signature": "0x00"},
    {"challenge_id": "chl_x", "signature": "0x" + "00" * 200},
    {"challenge_id": "chl_x", "signature": "0x00", "requested_scopes": [1]},
    {"challenge_id": "chl_x", "signature": "0x00", "more": True},
]


@pytest.mark.parametrize(
    "path", ["/wallets/link", "/wallets/verify", "/wallets/link/challenge", "/wallets/challenge"]
)
async def test_bad_bodies_get_stable_codes(
    server_client: httpx.AsyncClient, fresh_user: UserSession, path: str
) -> None:
    env = fresh_user.environment_id
    for body in BAD_BODIES:
        r = await server_client.post(sdk(env, path), json=body, headers=fresh_user.headers)
        assert 400 <= r.status_code < 500 and "code" in r.json(), (body, r.text)


@pytest.mark.parametrize("make", WALLETS)
async def test_garbage_signatures_on_a_real_challenge(
    server_client: httpx.AsyncClient, fresh_user: UserSession, make: Any
) -> None:
    wallet = make()
    await link_wallet(server_client, fresh_user.environment_id, fresh_user.headers, wallet)
    for sig in [
        "",
        "zz",
        "0x" + "ff" * 65,
        "0x" + "00" * 65,
        "1" * 88,
        "0OIl" * 10,
        "0x" + "1b" * 64 + "1c",
        "é" * 20,
    ]:
        ch = (await challenge(server_client, fresh_user)).json()
        r = await verify(server_client, fresh_user, ch["challenge_id"], sig)
        assert 400 <= r.status_code < 500 and "code" in r.json(), (sig, r.text)
