"""Client-side halves of the passkey, wallet and external-assertion flows, over the real HTTP API.

Signatures come from real libraries: the software WebAuthn authenticator
(``tests/core/methods/_soft_authenticator.py``), eth-account and PyNaCl + base58.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import base58
import httpx
import nacl.signing
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi import FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "core" / "methods"))

from _soft_authenticator import SoftwareAuthenticator  # noqa: E402

from stepguard.core.assurance import MethodName  # noqa: E402
from stepguard.core.methods.base import verified  # noqa: E402
from stepguard.core.tokens import unverified_claims  # noqa: E402
from stepguard.server.service import StepGuardService  # noqa: E402

__all__ = [
    "EthWallet",
    "SolWallet",
    "SoftwareAuthenticator",
    "claims_of",
    "elevated_token",
    "sdk",
]

RP_ID = "test"
ORIGIN = "http://test"


def sdk(env: str, path: str) -> str:
    return f"/sdk/{env}{path}"


def claims_of(token: str) -> dict[str, Any]:
    return unverified_claims(token)


async def elevated_token(
    app: FastAPI,
    session_token: str,
    env: str,
    scopes: list[str],
    method: MethodName = MethodName.EMAIL_OTP,
) -> str:
    """An elevated token minted by the service itself (as a verified email code would), for
    tests whose subject is the gate that needs it, not the factor that earns it."""
    service: StepGuardService = app.state.service
    session = await service.authenticate(env, session_token)
    minted = await service.mint(session, verified(method, now=service.clock.now()), scopes)
    return minted.token


class EthWallet:
    """An externally owned Ethereum account (eth-account)."""

    chain = "ethereum"

    def __init__(self) -> None:
        self.account = Account.create()
        self.address: str = self.account.address

    def sign(self, message: str) -> str:
        signed = self.account.sign_message(encode_defunct(text=message))
        return "0x" + bytes(signed.signature).hex()


class SolWallet:
    """A Solana keypair (PyNaCl Ed25519, base58 address)."""

    chain = "solana"

    def __init__(self) -> None:
        self.key = nacl.signing.SigningKey.generate()
        self.address: str = base58.b58encode(bytes(self.key.verify_key)).decode()

    def sign(self, message: str) -> str:
        return base58.b58encode(self.key.sign(message.encode()).signature).decode()


async def post(
    client: httpx.AsyncClient, url: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(url, json=body, headers=headers or {})


async def register_passkey(
    client: httpx.AsyncClient,
    env: str,
    headers: dict[str, str],
    auth: SoftwareAuthenticator,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    """Register a passkey for the session in ``headers`` (with a credential:link ``token``)."""
    extra = {"X-Elevated-Access-Token": token} if token else {}
    r = await client.post(
        sdk(env, "/passkeys/register/options"), json={}, headers={**headers, **extra}
    )
    assert r.status_code == 200, r.text
    opts = r.json()
    r = await client.post(
        sdk(env, "/passkeys/register"),
        json={"challenge_id": opts["challenge_id"], "credential": auth.create(opts["options"])},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def link_wallet(
    client: httpx.AsyncClient,
    env: str,
    headers: dict[str, str],
    wallet: EthWallet | SolWallet,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    """Link ``wallet`` through the signed link message; returns the wallet credential."""
    extra = {"X-Elevated-Access-Token": token} if token else {}
    r = await client.post(
        sdk(env, "/wallets/link/challenge"),
        json={"chain": wallet.chain, "address": wallet.address},
        headers={**headers, **extra},
    )
    assert r.status_code == 200, r.text
    ch = r.json()
    r = await client.post(
        sdk(env, "/wallets/link"),
        json={"challenge_id": ch["challenge_id"], "signature": wallet.sign(ch["message"])},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())
