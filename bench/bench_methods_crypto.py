"""Verify-and-mint for passkeys, Ethereum, Solana and external assertions, against each method's
raw crypto in the same run (performance.md §2.4, G8/G11).

"verify + mint" is the whole server path in process, without HTTP: the route handler is called
with a parsed body and a live session on the real service (SQLite, WAL): precheck, the challenge
row read and compare-and-set spend, the method's sans-IO verification, the lockout bookkeeping,
the EdDSA token signature, the grant row, one audit row, one commit. Each op consumes one
pre-issued challenge (issuing it is not timed). "core verify" is the sans-IO method alone.
Floors: P-256 ECDSA verify (``cryptography``), secp256k1 public-key recovery (coincurve),
Ed25519 verify (PyNaCl/libsodium), ES256 verify of the assertion (``cryptography``).

Absolute figures depend on the machine; the ratios are the result. Every timed call runs one
coroutine on one event loop (``run_until_complete``), whose own cost is shown as a row.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
import tempfile
import time
import uuid
import warnings
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import base58
import coincurve
import httpx
import nacl.signing
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from eth_account import Account
from eth_account.messages import encode_defunct
from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.requests import Request

from bench._harness import Report
from stepguard.core.methods.ethereum import personal_sign_digest
from stepguard.core.methods.passkey import PasskeyMethod, StoredPasskey
from stepguard.server.app import create_app
from stepguard.server.routes import external, passkey, wallet
from stepguard.server.service import LiveSession, StepGuardService
from stepguard.server.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core" / "methods"))
from _soft_authenticator import SoftwareAuthenticator, b64url_decode  # noqa: E402

PUBLIC_URL = "http://bench.test"
CORE_PASSKEY = PasskeyMethod()
ADMIN_KEY = "sgadm_bench_0123456789abcdef0123456789abcdef"
SCOPES = ["wallet:export"]


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class Bench:
    """One app and event loop for the whole module; sessions per method (no MFA cross-talk)."""

    def __init__(self, tmp: str) -> None:
        self.loop = asyncio.new_event_loop()
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp}/bench.db",
            data_dir=f"{tmp}/data",
            admin_key=ADMIN_KEY,
            public_url=PUBLIC_URL,
        )
        self.app = create_app(settings)
        self.service: StepGuardService = self.app.state.service
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.run(self._lifespan.__aenter__())
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=PUBLIC_URL
        )
        self.env = self.run(self.service.default_environment()).id
        self.request = Request(
            {
                "type": "http",
                "method": "POST",
                "path": "/",
                "headers": [],
                "query_string": b"",
                "client": ("127.0.0.1", 1),
                "app": self.app,
            }
        )

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self._lifespan.__aexit__(None, None, None))
        self.loop.close()

    def user(self, **fields: Any) -> tuple[str, LiveSession, dict[str, str]]:
        async def make() -> tuple[str, LiveSession, dict[str, str]]:
            user = await self.service.create_user(self.env, **fields)
            token, _ = await self.service.create_session(self.env, user.id)
            session = await self.service.authenticate(self.env, token)
            return user.id, session, {"Authorization": f"Bearer {token}"}

        result: tuple[str, LiveSession, dict[str, str]] = self.run(make())
        return result

    def post(self, path: str, body: Any, headers: dict[str, str]) -> dict[str, Any]:
        r = self.run(self.client.post(f"/sdk/{self.env}{path}", json=body, headers=headers))
        if r.status_code != 200:
            raise RuntimeError(f"{path}: {r.status_code} {r.text}")
        out: dict[str, Any] = r.json()
        return out


class Pool:
    """Pre-issued single-use inputs, consumed one per timed call."""

    def __init__(self, make: Callable[[int], list[Any]]) -> None:
        self.make = make
        self.items: deque[Any] = deque()

    def fill(self, n: int) -> None:
        self.items.extend(self.make(n))

    def pop(self) -> Any:
        return self.items.popleft()


def _pool_size(report: Report, per_op: float) -> int:
    # Warm-up + calibration (< repeat_time/5 * 11) + repeats of ~repeat_time, with 3x headroom.
    return int(3 * (report.repeats + 3) * report.repeat_time / per_op) + 100


def _check(answer: dict[str, Any]) -> None:
    if "elevated_access_token" not in answer:
        raise RuntimeError(f"no token: {answer}")


def run(report: Report) -> None:
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        bench = Bench(tmp)
        try:
            loop_floor = bench.loop
            report.measure(
                "event loop: run_until_complete(noop)",
                lambda: loop_floor.run_until_complete(_noop()),
                note="the per-call driver cost inside every verify+mint row",
            )
            _passkey(report, bench)
            _ethereum(report, bench)
            _solana(report, bench)
            _external(report, bench)
        finally:
            bench.close()


async def _noop() -> None:
    return None


def _timed(
    report: Report,
    bench: Bench,
    name: str,
    floor: str,
    pool: Pool,
    one: Callable[[Any], Awaitable[dict[str, Any]]],
) -> None:
    # Estimate the per-op cost on a few items to size the pool, then measure.
    pool.fill(20)
    started = time.perf_counter()
    for _ in range(20):
        _check(bench.run(one(pool.pop())))
    per_op = (time.perf_counter() - started) / 20
    pool.fill(_pool_size(report, per_op))
    report.measure(name, lambda: bench.run(one(pool.pop())), vs=floor)


# --- passkey --------------------------------------------------------------------------------
def _passkey(report: Report, bench: Bench) -> None:
    report.section("passkey (ES256 assertion, UV)")
    _, session, headers = bench.user()
    auth = SoftwareAuthenticator("bench.test", PUBLIC_URL)
    opts = bench.post("/passkeys/register/options", {}, headers)
    bench.post(
        "/passkeys/register",
        {"challenge_id": opts["challenge_id"], "credential": auth.create(opts["options"])},
        headers,
    )

    def make(n: int) -> list[Any]:
        out = []
        for _ in range(n):
            o = bench.run(
                passkey.authenticate_options(
                    passkey.AuthenticateOptionsBody(), bench.request, session, bench.service
                )
            )
            out.append((o["challenge_id"], auth.get(o["options"])))
        return out

    # The floor: the assertion's signature, checked by cryptography with a loaded key.
    sample = make(1)[0][1]
    cred = next(iter(auth.credentials.values()))
    public = cred.private_key.public_key()
    resp = sample["response"]
    signed = (
        b64url_decode(resp["authenticatorData"])
        + hashlib.sha256(b64url_decode(resp["clientDataJSON"])).digest()
    )
    der = b64url_decode(resp["signature"])
    ecdsa = ec.ECDSA(hashes.SHA256())
    floor = "P-256 ECDSA verify (cryptography)"
    report.measure(floor, lambda: public.verify(der, signed, ecdsa), floor=True)
    rp_opts, state = CORE_PASSKEY.begin(
        rp_id="bench.test", allow_credential_ids=[cred.credential_id], now=bench.service.clock.now()
    )
    assertion = auth.get(rp_opts)
    stored = StoredPasskey(
        credential_id=cred.credential_id,
        public_key=SoftwareAuthenticator._cose_key(cred.private_key),
        sign_count=0,
        backup_eligible=True,
        user_handle=cred.user_handle,
    )
    report.measure(
        "passkey core verify (py_webauthn + RP checks)",
        lambda: CORE_PASSKEY.complete(
            state,
            assertion,
            now=bench.service.clock.now(),
            stored=stored,
            expected_origin=PUBLIC_URL,
            expected_rp_id="bench.test",
        ),
        vs=floor,
    )

    async def one(item: Any) -> dict[str, Any]:
        challenge_id, credential = item
        body = passkey.AuthenticateBody(
            challenge_id=challenge_id, credential=credential, requested_scopes=SCOPES
        )
        result: dict[str, Any] = await passkey.authenticate(
            body, bench.request, session, bench.service
        )
        return result

    _timed(report, bench, "passkey verify + mint (server path)", floor, Pool(make), one)


# --- Ethereum ---------------------------------------------------------------------------------
def _wallet_pool(bench: Bench, session: LiveSession, sign: Callable[[str], str]) -> Pool:
    def make(n: int) -> list[Any]:
        out = []
        for _ in range(n):
            ch = bench.run(
                wallet.step_up_challenge(
                    wallet.StepUpChallengeBody(), bench.request, session, bench.service
                )
            )
            out.append((ch["challenge_id"], sign(ch["message"])))
        return out

    return Pool(make)


async def _wallet_one(bench: Bench, session: LiveSession, item: Any) -> dict[str, Any]:
    challenge_id, signature = item
    body = wallet.VerifyBody(
        challenge_id=challenge_id, signature=signature, requested_scopes=SCOPES
    )
    result: dict[str, Any] = await wallet.verify_wallet(body, bench.request, session, bench.service)
    return result


def _core_wallet(
    report: Report, bench: Bench, chain: str, address: str, sign: Callable[[str], str], floor: str
) -> None:
    now = bench.service.clock.now()
    fn: Callable[[], object]
    if chain == "ethereum":
        text, state = wallet.ETHEREUM.begin(
            domain="bench.test", uri=PUBLIC_URL, address=address, chain_id=1, now=now
        )
        sig = sign(text)

        def fn() -> object:
            return wallet.ETHEREUM.complete(state, text, sig, now=now, allowed_chain_ids=[1])
    else:
        stext, sstate = wallet.SOLANA.begin(
            domain="bench.test", uri=PUBLIC_URL, address=address, now=now
        )
        ssig = sign(stext)

        def fn() -> object:
            return wallet.SOLANA.complete(
                sstate, stext, ssig, now=now, allowed_chain_ids=["solana:mainnet"]
            )

    report.measure(f"{chain} core verify (parse, fields, signature)", fn, vs=floor)


def _link(
    bench: Bench, headers: dict[str, str], chain: str, address: str, sign: Callable[[str], str]
) -> None:
    ch = bench.post("/wallets/link/challenge", {"chain": chain, "address": address}, headers)
    bench.post(
        "/wallets/link",
        {"challenge_id": ch["challenge_id"], "signature": sign(ch["message"])},
        headers,
    )


def _ethereum(report: Report, bench: Bench) -> None:
    report.section("Ethereum (SIWE, EIP-191)")
    _, session, headers = bench.user()
    account = Account.create()

    def sign(message: str) -> str:
        return "0x" + bytes(account.sign_message(encode_defunct(text=message)).signature).hex()

    _link(bench, headers, "ethereum", account.address, sign)
    message = b"bench.test wants you to sign in"
    sig = bytes.fromhex(sign(message.decode())[2:])
    recoverable = sig[:64] + bytes([sig[64] - 27])
    digest = personal_sign_digest(message)
    floor = "secp256k1 recover (coincurve)"
    report.measure(
        floor,
        lambda: coincurve.PublicKey.from_signature_and_message(recoverable, digest, hasher=None),
        floor=True,
    )
    _core_wallet(report, bench, "ethereum", account.address, sign, floor)
    _timed(
        report,
        bench,
        "Ethereum verify + mint (server path)",
        floor,
        _wallet_pool(bench, session, sign),
        lambda item: _wallet_one(bench, session, item),
    )


# --- Solana -----------------------------------------------------------------------------------
def _solana(report: Report, bench: Bench) -> None:
    report.section("Solana (SIWS, Ed25519)")
    _, session, headers = bench.user()
    key = nacl.signing.SigningKey.generate()
    address = base58.b58encode(bytes(key.verify_key)).decode()

    def sign(message: str) -> str:
        return base58.b58encode(key.sign(message.encode()).signature).decode()

    _link(bench, headers, "solana", address, sign)
    message = b"bench.test wants you to sign in with your Solana account:" * 6
    signature = key.sign(message).signature
    verify_key = key.verify_key
    floor = "Ed25519 verify (PyNaCl/libsodium)"
    report.measure(floor, lambda: verify_key.verify(message, signature), floor=True)
    _core_wallet(report, bench, "solana", address, sign, floor)
    _timed(
        report,
        bench,
        "Solana verify + mint (server path)",
        floor,
        _wallet_pool(bench, session, sign),
        lambda item: _wallet_one(bench, session, item),
    )


# --- external assertion -----------------------------------------------------------------------
def _external(report: Report, bench: Bench) -> None:
    report.section("external assertion (ES256 JWT)")
    _, session, _ = bench.user(external_id="bench-user")
    key = ECKey.generate_key("P-256", parameters={"kid": "app-1"})
    bench.run(
        bench.service.set_external_jwks(
            bench.env, jwks={"keys": [key.as_dict(private=False)]}, jwks_url=None
        )
    )

    def assertion() -> str:
        now = int(bench.service.clock.now())
        claims = {
            "sub": "bench-user",
            "scope": "wallet:export",
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + 240,
        }
        return jwt.encode({"alg": "ES256", "kid": "app-1"}, claims, key)

    token = assertion()
    head_payload, _, sig_b64 = token.rpartition(".")
    sig = _b64(sig_b64)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    public = key.get_op_key("verify")
    ecdsa = ec.ECDSA(hashes.SHA256())
    signing_input = head_payload.encode()
    floor = "ES256 verify of the assertion (cryptography)"
    report.measure(floor, lambda: public.verify(der, signing_input, ecdsa), floor=True)  # type: ignore[union-attr]

    jwks = {"keys": [key.as_dict(private=False)]}
    report.measure(
        "external core verify (header, kid, joserfc, claims)",
        lambda: external.METHOD.complete(
            jwks, token, now=bench.service.clock.now(), expected_subject="bench-user"
        ),
        vs=floor,
    )

    async def one(item: str) -> dict[str, Any]:
        body = external.ExternalBody(jwt=item)
        result: dict[str, Any] = await external.verify_external(
            body, bench.request, session, bench.service
        )
        return result

    _timed(
        report,
        bench,
        "external verify + mint (server path)",
        floor,
        Pool(lambda n: [assertion() for _ in range(n)]),
        one,
    )
