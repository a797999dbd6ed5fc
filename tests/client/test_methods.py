"""Every verification method end to end through the SDK (sync and async) against the real server:
enrolment behind ``credential:link``, step-up, the token it mints, and the attacks that must fail."""

from __future__ import annotations

import nacl.signing
import pytest
from eth_account import Account

from stepguard.client import (
    CodeUsed,
    EthereumSigner,
    InvalidCode,
    InvalidSignature,
    MfaRequired,
    NoMethodsAvailable,
    SolanaSigner,
    StepUpRequired,
)
from stepguard.core.tokens import unverified_claims


def scopes_of(token: str) -> set[str]:
    return set(unverified_claims(token)["scope"].split())


async def test_totp_enrolment_needs_link_then_steps_up(sg) -> None:
    user = await sg.user()
    client = sg.client(user)
    # Enrolling once a credential is verified needs credential:link; without a prompter: raised.
    with pytest.raises(StepUpRequired) as caught:
        await sg.r(client.mfa.add_totp_device())
    assert caught.value.scope == "credential:link"
    device_id = await sg.enrol_totp(client, user)
    devices = await sg.r(client.mfa.list_devices())
    assert [(d.id, d.type, d.verified) for d in devices] == [(device_id, "totp", True)]

    token = await sg.r(
        client.step_up_auth.verify_totp_mfa(sg.totp_code(user), requested_scopes=["wallet:export"])
    )
    claims = unverified_claims(token)
    assert claims["scope"] == "wallet:export" and claims["single_use"] is True
    assert "otp" in claims["amr"] or "mfa" in claims["amr"]
    # With a device id, and a wrong code.
    await sg.r(
        client.step_up_auth.verify_totp_mfa(
            sg.totp_code(user), device_id, requested_scopes=["user:update"]
        )
    )
    with pytest.raises(InvalidCode):
        await sg.r(client.step_up_auth.verify_totp_mfa("000000", requested_scopes=["user:update"]))
    # The same TOTP step twice is refused (replay).
    code = sg.totp_code(user)
    await sg.r(client.step_up_auth.verify_totp_mfa(code, requested_scopes=["user:delete"]))
    with pytest.raises((CodeUsed, InvalidCode)):
        await sg.r(client.step_up_auth.verify_totp_mfa(code, requested_scopes=["user:delete"]))


async def test_mfa_user_cannot_reauthenticate_with_email(sg) -> None:
    user = await sg.user()
    client = sg.client(user)
    await sg.enrol_totp(client, user)
    check = await sg.r(client.step_up_auth.check_step_up_auth("wallet:export"))
    assert {c.format for c in check.credentials} == {"totp"}
    await sg.r(client.step_up_auth.send_otp())
    with pytest.raises(MfaRequired) as caught:
        await sg.r(
            client.step_up_auth.verify_otp(
                sg.last_code("alice@example.com"), requested_scopes=["wallet:export"]
            )
        )
    assert caught.value.code == "mfa_required" and caught.value.http_status == 403


async def test_recovery_codes(sg) -> None:
    user = await sg.user()
    client = sg.client(user)
    await sg.enrol_totp(client, user)
    await sg.r(
        client.step_up_auth.verify_totp_mfa(
            sg.totp_code(user), requested_scopes=["credential:link"]
        )
    )
    codes = await sg.r(client.mfa.get_recovery_codes(generate_new=True))
    assert len(codes.codes) == 10 and len(set(codes.codes)) == 10
    token = await sg.r(
        client.step_up_auth.verify_recovery_code(codes.codes[0], requested_scopes=["user:update"])
    )
    assert scopes_of(token) == {"user:update"}
    with pytest.raises((CodeUsed, InvalidCode)):  # single use
        await sg.r(
            client.step_up_auth.verify_recovery_code(
                codes.codes[0], requested_scopes=["user:update"]
            )
        )
    check = await sg.r(client.step_up_auth.check_step_up_auth("wallet:export"))
    assert "recovery_code" in {c.format for c in check.credentials}


async def test_passkey_registration_and_step_up(sg) -> None:
    user = await sg.user()
    authenticator = sg.authenticator()
    client = sg.client(user, authenticator=authenticator)
    await sg.link_token(client, user)
    device = await sg.r(client.mfa.register_passkey())
    assert device.verified is True
    assert len(authenticator.credentials) == 1
    token = await sg.r(client.step_up_auth.verify_passkey_mfa(requested_scopes=["wallet:export"]))
    assert scopes_of(token) == {"wallet:export"}
    # Another user's authenticator holds no allowed credential.
    other = sg.client(user, authenticator=sg.authenticator())
    with pytest.raises(ValueError, match="NotAllowedError"):
        await sg.r(other.step_up_auth.verify_passkey_mfa(requested_scopes=["wallet:export"]))
    # No authenticator configured: a clear error, no request.
    bare = sg.client(user)
    with pytest.raises(NoMethodsAvailable, match="authenticator"):
        await sg.r(bare.step_up_auth.verify_passkey_mfa(requested_scopes=["wallet:export"]))


@pytest.mark.parametrize("chain", ["ethereum", "solana"])
async def test_wallet_link_and_step_up(sg, chain: str) -> None:
    user = await sg.user()
    client = sg.client(user)
    signer = (
        Account.create() if chain == "ethereum" else nacl.signing.SigningKey.generate()
    )  # raw library objects: the SDK adapts them
    await sg.link_token(client, user)
    wallet = await sg.r(client.wallets.link(signer))
    assert wallet.format == "blockchain" and wallet.type == chain
    assert [w.id for w in await sg.r(client.wallets.list_wallets())] == [wallet.id]

    token = await sg.r(client.step_up_auth.verify_wallet(requested_scopes=["user:update"]))
    assert scopes_of(token) == {"user:update"}
    token = await sg.r(
        client.step_up_auth.verify_wallet(wallet.id, requested_scopes=["wallet:export"])
    )
    assert unverified_claims(token)["single_use"] is True

    # A fresh client without the signer cannot sign; with the wrong key the server refuses.
    fresh = sg.client(user)
    with pytest.raises(NoMethodsAvailable, match="signer"):
        await sg.r(fresh.step_up_auth.verify_wallet(wallet.id, requested_scopes=["user:update"]))

    class Impostor:
        chain = wallet.type
        address = (
            EthereumSigner(signer).address if chain == "ethereum" else SolanaSigner(signer).address
        )

        def sign_message(self, message: bytes) -> bytes:
            other = (
                EthereumSigner(Account.create())
                if chain == "ethereum"
                else SolanaSigner(nacl.signing.SigningKey.generate())
            )
            return other.sign_message(message)

    fresh.wallets.add_signer(Impostor())
    with pytest.raises(InvalidSignature):
        await sg.r(fresh.step_up_auth.verify_wallet(wallet.id, requested_scopes=["user:update"]))


async def test_delete_device_needs_unlink(sg) -> None:
    user = await sg.user()
    client = sg.client(user)
    device_id = await sg.enrol_totp(client, user)
    with pytest.raises(StepUpRequired) as caught:
        await sg.r(client.mfa.delete_device(device_id))
    assert caught.value.scope == "credential:unlink"
    await sg.r(
        client.step_up_auth.verify_totp_mfa(
            sg.totp_code(user), requested_scopes=["credential:unlink"]
        )
    )
    await sg.r(client.mfa.delete_device(device_id))
    assert await sg.r(client.mfa.list_devices()) == []
