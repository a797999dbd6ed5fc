"""External wallets: linking by signature and step-up by a fresh signature (SIWE and SIWS).

Linking issues a Sign-In with Ethereum (EIP-4361) or Sign In With Solana message with a server
nonce; the wallet's signature over it proves control of the address, and only then is the wallet
stored (``data.source = "external"``). Step-up issues a new message for a linked wallet and
verifies it with :class:`~stepguard.core.methods.ethereum.EthereumMethod` or
:class:`~stepguard.core.methods.solana.SolanaMethod`: every field must equal the issued one
(domain and URI from ``STEPGUARD_PUBLIC_URL``, chain, nonce, times), and the nonce is the single-use
challenge itself. Embedded or custodial wallets (anything not linked through a signature here)
never qualify (reference product: "embedded wallets cannot be used for step-up").
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import Field, StrictInt, StrictStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stepguard.core.assurance import MethodName
from stepguard.core.errors import (
    Conflict,
    InvalidSignature,
    MethodNotAllowed,
    NoMethodsAvailable,
    NotFound,
    ValidationFailed,
)
from stepguard.core.methods._wallet import SignInMessage, WalletChallenge
from stepguard.core.methods.base import VerifiedFactor
from stepguard.core.methods.ethereum import EthereumMethod, SiweState, to_checksum_address
from stepguard.core.methods.solana import (
    SIWS_CHAIN_IDS,
    SiwsState,
    SolanaMethod,
    check_linkable_public_key,
    decode_address,
)
from stepguard.core.scopes import TokenScope
from stepguard.server.audit import audit
from stepguard.server.db import Challenge, Credential, new_id
from stepguard.server.deps import CurrentSession, Service
from stepguard.server.routes._ceremony import (
    attempt,
    burn_challenge,
    load_challenge,
    relying_party,
    spend_challenge,
    store_challenge,
)
from stepguard.server.routes._codes import finish, precheck_elevation
from stepguard.server.schemas import Body
from stepguard.server.service import LiveSession, StepGuardService
from stepguard.server.stepup import (
    EXTERNAL_WALLET_SOURCE,
    Requested,
    credential_json,
    elevation_gate,
    ip_of,
    is_external_wallet,
)

__all__ = ["ETHEREUM_CHAIN_IDS", "EXTERNAL_SOURCE", "router"]

router = APIRouter(prefix="/sdk/{environment_id}", tags=["wallets"])

#: EVM chains whose ids a wallet message may carry (mainnet, OP, Polygon, Base, Arbitrum, Sepolia).
#: An externally owned account's EIP-191 signature does not depend on the chain; the id is
#: still allowlisted so a message for an unknown chain is never accepted (req. 38).
ETHEREUM_CHAIN_IDS = frozenset({1, 10, 137, 8453, 42161, 11155111})
DEFAULT_CHAIN_ID: dict[str, int | str] = {"ethereum": 1, "solana": "solana:mainnet"}
#: ``Credential.data["source"]`` of a wallet linked by signature; nothing else is a step-up factor.
EXTERNAL_SOURCE = EXTERNAL_WALLET_SOURCE
LINK_STATEMENT = "Link this wallet to your account."
STEP_UP_STATEMENT = "Confirm it is you to continue."

ETHEREUM = EthereumMethod()
SOLANA = SolanaMethod()
Chain = Literal["ethereum", "solana"]
_METHODS = {"ethereum": MethodName.ETHEREUM, "solana": MethodName.SOLANA}


class LinkChallengeBody(Body):
    chain: Chain
    address: StrictStr = Field(min_length=1, max_length=100)
    chain_id: StrictInt | StrictStr | None = None


class SignatureBody(Body):
    challenge_id: StrictStr = Field(min_length=1, max_length=64)
    signature: StrictStr = Field(min_length=1, max_length=200)


class StepUpChallengeBody(Body):
    wallet_id: StrictStr | None = Field(default=None, min_length=1, max_length=64)


class VerifyBody(Requested, SignatureBody):
    pass


def _normalize(chain: str, address: str) -> str:
    """The canonical address: EIP-55 for Ethereum; for Solana a key fit to bind (req. 41)."""
    if chain == "ethereum":
        return to_checksum_address(address)
    # A small-order or non-canonical Ed25519 key would verify forged signatures: never bind one.
    check_linkable_public_key(decode_address(address))
    return address


def _chain_id(chain: str, requested: int | str | None) -> int | str:
    value = DEFAULT_CHAIN_ID[chain] if requested is None else requested
    if chain == "ethereum":
        if not isinstance(value, int) or value not in ETHEREUM_CHAIN_IDS:
            raise ValidationFailed(f"chain_id must be one of {sorted(ETHEREUM_CHAIN_IDS)}")
    elif value not in SIWS_CHAIN_IDS:
        raise ValidationFailed(f"chain_id must be one of {sorted(SIWS_CHAIN_IDS)}")
    return value


def _issue(
    service: StepGuardService, chain: str, address: str, chain_id: int | str, statement: str
) -> tuple[str, WalletChallenge]:
    rp = relying_party(service.settings)
    now = service.clock.now()
    if chain == "ethereum":
        return ETHEREUM.begin(
            domain=rp.domain,
            uri=rp.uri,
            address=address,
            chain_id=int(chain_id),
            now=now,
            statement=statement,
        )
    return SOLANA.begin(
        domain=rp.domain,
        uri=rp.uri,
        address=address,
        chain_id=str(chain_id),
        now=now,
        statement=statement,
    )


def _state_json(chain: str, chain_id: int | str, state: WalletChallenge) -> dict[str, Any]:
    return {
        "chain": chain,
        "chain_id": chain_id,
        "text": state.text,
        "message": dataclasses.asdict(state.message),
    }


def _complete(row: Challenge, signature: str, now: float) -> VerifiedFactor:
    """Check ``signature`` over the issued message (the client never resends the text)."""
    st = row.state
    fields = dict(st["message"])
    fields["resources"] = tuple(fields.get("resources", ()))
    message = SignInMessage(**fields)
    if st["chain"] == "ethereum":
        siwe = SiweState(message=message, text=st["text"], expires_at=row.expires_at)
        return ETHEREUM.complete(
            siwe, st["text"], signature, now=now, allowed_chain_ids=ETHEREUM_CHAIN_IDS
        )
    siws = SiwsState(message=message, text=st["text"], expires_at=row.expires_at)
    return SOLANA.complete(siws, st["text"], signature, now=now, allowed_chain_ids=SIWS_CHAIN_IDS)


async def _owner_of(s: AsyncSession, env: str, chain: str, address: str) -> Credential | None:
    stmt = select(Credential).where(
        Credential.environment_id == env,
        Credential.kind == "wallet",
        Credential.chain == chain,
        Credential.value == address,
    )
    return (await s.scalars(stmt)).first()


def wallet_json(cred: Credential) -> dict[str, Any]:
    """The public view of a wallet: the shared credential view plus chain and address."""
    out = credential_json(cred)
    out.update(chain=cred.chain, address=cred.value, chain_id=cred.data.get("chain_id"))
    return out


async def _step_up_wallet(
    s: AsyncSession, session: LiveSession, wallet_id: str | None
) -> Credential:
    if wallet_id is not None:
        cred = await s.get(Credential, wallet_id)
        if cred is None or cred.user_id != session.user_id or cred.kind != "wallet":
            raise NotFound("unknown wallet", resource="wallet")
        if not is_external_wallet(cred):
            raise MethodNotAllowed("embedded or custodial wallets cannot be used for step-up")
        return cred
    stmt = (
        select(Credential)
        .where(
            Credential.user_id == session.user_id,
            Credential.kind == "wallet",
            Credential.verified.is_(True),
            Credential.sign_in_enabled.is_(True),
        )
        .order_by(Credential.created_at)
    )
    for cred in (await s.scalars(stmt)).all():
        if is_external_wallet(cred):
            return cred
    raise NoMethodsAvailable("no externally linked wallet for step-up")


# --- linking --------------------------------------------------------------------------------
@router.post("/wallets/link/challenge")
async def link_challenge(
    body: LinkChallengeBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """A sign-in message for the wallet to sign, proving control of ``address`` (needs
    ``credential:link`` once the user has any verified credential)."""
    now = service.clock.now()
    address = _normalize(body.chain, body.address)
    chain_id = _chain_id(body.chain, body.chain_id)
    async with service.db.transaction() as s:
        await elevation_gate(service, request, session, TokenScope.CREDENTIAL_LINK.value, s=s)
        if await _owner_of(s, session.environment_id, body.chain, address) is not None:
            raise Conflict("this wallet is already linked")
        text, state = _issue(service, body.chain, address, chain_id, LINK_STATEMENT)
        row = await store_challenge(
            s,
            environment_id=session.environment_id,
            method=_METHODS[body.chain],
            purpose="enroll",
            state=_state_json(body.chain, chain_id, state),
            now=now,
            expires_at=state.expires_at,
            session=session,
            ip=ip_of(request, service),
        )
    return {
        "challenge_id": row.id,
        "message": text,
        "chain": body.chain,
        "address": address,
        "chain_id": chain_id,
        "expires_at": state.expires_at,
    }


@router.post("/wallets/link")
async def link(
    body: SignatureBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Verify the signature over the link message and store the wallet (external, verified)."""
    now = service.clock.now()
    async with service.db.session() as s:
        pending = await s.get(Challenge, body.challenge_id)
    method = (
        MethodName(pending.method)
        if pending and pending.method in _METHODS.values()
        else MethodName.ETHEREUM
    )

    async def verify(s: AsyncSession, _: Credential | None) -> dict[str, Any]:
        row = await load_challenge(
            s,
            body.challenge_id,
            environment_id=session.environment_id,
            methods=list(_METHODS.values()),
            purpose="enroll",
            session=session,
            now=now,
        )
        await spend_challenge(s, row.id, now=now)
        factor = _complete(row, body.signature, now)
        chain = row.state["chain"]
        address = str(factor.details["address"])
        if await _owner_of(s, session.environment_id, chain, address) is not None:
            raise Conflict("this wallet is already linked")
        cred = Credential(
            id=new_id("cred_"),
            environment_id=session.environment_id,
            user_id=session.user_id,
            kind="wallet",
            value=address,
            chain=chain,
            alias=None,
            verified=True,
            sign_in_enabled=True,
            is_default=False,
            data={"source": EXTERNAL_SOURCE, "chain_id": row.state["chain_id"]},
            failure_count=0,
            locked_until=0.0,
            created_at=now,
            verified_at=now,
        )
        s.add(cred)
        await s.flush()
        audit(
            s,
            now=now,
            actor="user",
            action="credential.link",
            environment_id=session.environment_id,
            user_id=session.user_id,
            ip=ip_of(request, service),
            method=factor.method.value,
            details={"credential_id": cred.id, "kind": "wallet", "chain": chain},
        )
        return wallet_json(cred)

    return await attempt(
        service,
        request,
        environment_id=session.environment_id,
        user_id=session.user_id,
        method=method,
        credential_id=None,
        scopes=(),
        action="link",
        verify=verify,
        on_failure=burn_challenge(body.challenge_id, now=now),
    )


# --- step-up --------------------------------------------------------------------------------
@router.post("/wallets/challenge")
async def step_up_challenge(
    body: StepUpChallengeBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """A fresh message for one of the user's externally linked wallets (default: the first)."""
    now = service.clock.now()
    async with service.db.transaction() as s:
        wallet = await _step_up_wallet(s, session, body.wallet_id)
        chain = str(wallet.chain)
        chain_id = wallet.data.get("chain_id", DEFAULT_CHAIN_ID[chain])
        text, state = _issue(service, chain, wallet.value, chain_id, STEP_UP_STATEMENT)
        row = await store_challenge(
            s,
            environment_id=session.environment_id,
            method=_METHODS[chain],
            purpose="step_up",
            state=_state_json(chain, chain_id, state),
            now=now,
            expires_at=state.expires_at,
            session=session,
            credential_id=wallet.id,
            ip=ip_of(request, service),
        )
    return {
        "challenge_id": row.id,
        "message": text,
        "wallet_id": wallet.id,
        "chain": chain,
        "address": wallet.value,
        "chain_id": chain_id,
        "expires_at": state.expires_at,
    }


@router.post("/wallets/verify")
async def verify_wallet(
    body: VerifyBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Verify the wallet's signature and mint an elevated token for ``requested_scopes``.

    A re-authentication factor: refused with ``mfa_required`` when the user has verified MFA.
    """
    now = service.clock.now()
    ip = ip_of(request, service)
    async with service.db.session() as s:
        pending = await s.get(Challenge, body.challenge_id)
    mine = pending is not None and pending.session_id == session.id
    method = MethodName(pending.method) if mine and pending else MethodName.ETHEREUM
    wallet_id = pending.credential_id if mine and pending else None
    # MFA precedence and scope checks come first: a request that can never mint must not spend
    # the nonce or count as a failed signature on the wallet.
    await precheck_elevation(service, session, method, body.requested_scopes, ip=ip)

    async def verify(s: AsyncSession, wallet: Credential | None) -> dict[str, Any]:
        row = await load_challenge(
            s,
            body.challenge_id,
            environment_id=session.environment_id,
            methods=list(_METHODS.values()),
            purpose="step_up",
            session=session,
            now=now,
        )
        await spend_challenge(s, row.id, now=now)
        # The wallet may have been unlinked (or demoted) since the challenge was issued.
        if wallet is None or wallet.user_id != session.user_id or not is_external_wallet(wallet):
            raise InvalidSignature("this wallet can no longer be used for step-up")
        factor = _complete(row, body.signature, now)
        if str(factor.details["address"]).lower() != wallet.value.lower():
            raise InvalidSignature("the message was signed for another wallet")
        factor = dataclasses.replace(factor, credential_id=wallet.id)
        return await finish(service, session, factor, body.requested_scopes, ip=ip, s=s)

    return await attempt(
        service,
        request,
        environment_id=session.environment_id,
        user_id=session.user_id,
        method=method,
        credential_id=wallet_id,
        scopes=body.requested_scopes,
        action="verify",
        verify=verify,
        on_failure=burn_challenge(body.challenge_id, now=now),
    )
