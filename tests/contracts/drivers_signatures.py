"""Contract drivers for the signature-based methods: passkeys, Ethereum and Solana wallets.

Responses are made by real signers: the software WebAuthn authenticator, eth-account and
PyNaCl. A "bad" response is correctly formed and correctly signed, and fails only on the server's
check (a passkey assertion without user verification; a wallet signature by another key).
Enrolment earns its ``credential:link`` token honestly, through an email code.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
from _driver import MethodDriver, register
from methods._code_flows import link_token
from methods._flows import (
    EthWallet,
    SoftwareAuthenticator,
    SolWallet,
    link_wallet,
    register_passkey,
    sdk,
)


class _Driver(MethodDriver):
    async def _link_token(self) -> str:
        user = self.ctx.user
        return await link_token(
            self.ctx.client, user.environment_id, user.session_token, user.email, self.ctx.smtp_sink
        )

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        user = self.ctx.user
        return await self.ctx.client.post(
            sdk(user.environment_id, path), json=body, headers=user.headers
        )


@register
class PasskeyDriver(_Driver):
    """A passkey step-up: request options, answer with an assertion."""

    name: ClassVar[str] = "passkey"

    async def setup(self) -> None:
        self.auth = SoftwareAuthenticator("test", "http://test")
        user = self.ctx.user
        await register_passkey(
            self.ctx.client,
            user.environment_id,
            user.headers,
            self.auth,
            token=await self._link_token(),
        )

    async def begin(self) -> Any:
        r = await self._post("/passkeys/authenticate/options", {})
        if r.status_code != 200:
            return r
        return r.json()

    async def good(self, attempt: Any) -> Any:
        return self.auth.get(attempt["options"])

    async def bad(self, attempt: Any) -> Any:
        return self.auth.get(attempt["options"], user_verified=False)

    async def submit(self, attempt: Any, response: Any) -> httpx.Response:
        return await self._post(
            "/passkeys/authenticate",
            {
                "challenge_id": attempt["challenge_id"],
                "credential": response,
                "requested_scopes": self.scopes,
            },
        )


class _WalletDriver(_Driver):
    """A wallet step-up: request the message, answer with its signature."""

    wallet_type: ClassVar[type[EthWallet] | type[SolWallet]]

    async def setup(self) -> None:
        self.wallet = self.wallet_type()
        self.impostor = self.wallet_type()
        user = self.ctx.user
        await link_wallet(
            self.ctx.client,
            user.environment_id,
            user.headers,
            self.wallet,
            token=await self._link_token(),
        )

    async def begin(self) -> Any:
        r = await self._post("/wallets/challenge", {})
        if r.status_code != 200:
            return r
        return r.json()

    async def good(self, attempt: Any) -> Any:
        return self.wallet.sign(attempt["message"])

    async def bad(self, attempt: Any) -> Any:
        return self.impostor.sign(attempt["message"])

    async def submit(self, attempt: Any, response: Any) -> httpx.Response:
        return await self._post(
            "/wallets/verify",
            {
                "challenge_id": attempt["challenge_id"],
                "signature": response,
                "requested_scopes": self.scopes,
            },
        )


@register
class EthereumDriver(_WalletDriver):
    name: ClassVar[str] = "ethereum"
    wallet_type = EthWallet


@register
class SolanaDriver(_WalletDriver):
    name: ClassVar[str] = "solana"
    wallet_type = SolWallet
