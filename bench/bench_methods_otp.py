"""Verify-and-mint for TOTP, email OTP and recovery codes, against each method's raw crypto in
the same run (performance.md §2.4, G8).

"verify + mint" is the whole server path in process, without HTTP: the operation behind the route
is called with a live session on the real service (SQLite, WAL): request throttles, the policy
pre-check, the lockout check, the method's sans-IO verification, the compare-and-set claim (TOTP
step, the code's attempt reservation and ``used_at``, the recovery code's ``used_at``), the EdDSA
token signature, the grant row, the audit row, the commit. Email codes and recovery codes are
pre-issued (issuing is not timed), one per call and one user per email code, so no throttle is hit;
TOTP uses one pre-enrolled device per call, confirmed one step earlier, with the clock standing still
while timing (the code computation, one HOTP, is inside the timing). "core verify" is the sans-IO
method alone.

Floors, as the brief of issue 3 sets them: the raw crypto of the method plus one Ed25519 signature
(``cryptography``) over a token-sized message: one HOTP (pyotp) for TOTP, one HMAC-SHA256 for email
codes and recovery codes. The gap between the floors and the server path is database round trips
(aiosqlite hops a thread per statement): the "one INSERT + commit" row shows one of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import tempfile
import uuid
import warnings
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._harness import Report
from bench.bench_methods_crypto import Bench, Pool, _timed
from stepguard.core.clock import FixedClock
from stepguard.core.methods.email_otp import EmailOtpMethod
from stepguard.core.methods.recovery import (
    RecoveryCodeMethod,
    RecoveryCodeState,
    generate_recovery_codes,
)
from stepguard.core.methods.totp import TotpDeviceState, TotpMethod, generate_secret, totp_at
from stepguard.server.db import AuditEvent
from stepguard.server.routes import otp, recovery, totp
from stepguard.server.routes._codes import keyed_digest

SCOPES = ["wallet:export"]
INSERT = "one INSERT + commit (aiosqlite, WAL)"
#: A token-sized message (header + claims of an elevated token, base64url): what mint signs.
TOKEN_INPUT = b"e" * 330


def run(report: Report) -> None:
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        bench = Bench(tmp)
        # TOTP enrols devices one step in the past: the service reads a clock we drive. Swapped
        # before any throttle or code exists, starting at the real time.
        clock = FixedClock(bench.service.clock.now())
        bench.service.clock = clock
        try:
            loop = bench.loop
            report.measure(
                "event loop: run_until_complete(noop)",
                lambda: loop.run_until_complete(_noop()),
                note="the per-call driver cost inside every verify+mint row",
            )
            report.measure(
                INSERT,
                lambda: bench.run(_insert(bench)),
                note="one database round trip of the kind verify+mint makes several of",
            )
            signer = Ed25519PrivateKey.generate()
            _email(report, bench, signer)
            _recovery(report, bench, signer)
            _totp(report, bench, signer, clock)
        finally:
            bench.close()


async def _noop() -> None:
    return None


async def _insert(bench: Bench) -> None:
    async with bench.service.db.transaction() as s:
        s.add(AuditEvent(at=0.0, actor="bench", action="bench", outcome="ok", details={}))


def _hmac_floor(signer: Ed25519PrivateKey) -> Any:
    key = os.urandom(32)
    message = (
        b'["stepguard/otp/v1","otp_xxxxxxxxxxxxxxxxxxxxxx","usr_x","email_otp","c","d","123456"]'
    )

    def floor() -> None:
        hmac.new(key, message, hashlib.sha256).hexdigest()
        signer.sign(TOKEN_INPUT)

    return floor


# --- email OTP ----------------------------------------------------------------------------------
def _email(report: Report, bench: Bench, signer: Ed25519PrivateKey) -> None:
    report.section("email OTP (keyed HMAC-SHA256 digest, 6 digits)")
    floor = "HMAC-SHA256 + Ed25519 sign"
    report.measure(floor, _hmac_floor(signer), floor=True)

    digest = keyed_digest(bench.service, b"otp")
    code, state = EmailOtpMethod.begin(
        challenge_id="otp_bench",
        user_id="usr_bench",
        credential_id="cred_bench",
        destination="bench@example.com",
        now=bench.service.clock.now(),
        digest=digest,
    )
    now = bench.service.clock.now()
    report.measure(
        "email OTP: core verify (sans-IO)",
        lambda: EmailOtpMethod.complete(state, code, now=now, digest=digest),
        vs=floor,
    )

    def make(n: int) -> list[Any]:
        async def issue() -> list[Any]:
            out: list[Any] = []
            for _ in range(n):
                user = await bench.service.create_user(
                    bench.env, email=f"{uuid.uuid4().hex[:12]}@example.com"
                )
                token, _ = await bench.service.create_session(bench.env, user.id)
                session = await bench.service.authenticate(bench.env, token)
                cred = (await bench.service.credentials(user.id))[0]
                code, state = await otp.store_code(
                    bench.service,
                    environment_id=bench.env,
                    user_id=user.id,
                    session_id=session.id,
                    credential_id=cred.id,
                    kind="email",
                    destination=cred.value,
                    purpose=otp.PURPOSE_STEP_UP,
                    ip=None,
                )
                out.append((session, state.challenge_id, code))
            return out

        result: list[Any] = bench.run(issue())
        return result

    async def one(item: Any) -> dict[str, Any]:
        session, vid, code = item
        return await otp.verify_otp(
            bench.service,
            session,
            verification_id=vid,
            code=code,
            requested_scopes=SCOPES,
            ip=None,
        )

    _timed(report, bench, "email OTP: verify + mint", floor, Pool(make), one)
    _note_vs_insert(report, "email OTP: verify + mint", floor)


# --- recovery codes -----------------------------------------------------------------------------
def _recovery(report: Report, bench: Bench, signer: Ed25519PrivateKey) -> None:
    report.section("recovery codes (keyed HMAC-SHA256 over 10 slots)")
    floor = "HMAC-SHA256 + Ed25519 sign (recovery)"
    report.measure(floor, _hmac_floor(signer), floor=True)
    digest = keyed_digest(bench.service, b"recovery")
    codes = generate_recovery_codes()
    state = RecoveryCodeState.from_codes(codes, digest=digest)
    now = bench.service.clock.now()
    report.measure(
        "recovery code: core verify (sans-IO)",
        lambda: RecoveryCodeMethod.complete(state, codes[9], now=now, digest=digest),
        vs=floor,
    )

    def make(n: int) -> list[Any]:
        async def issue() -> list[Any]:
            out: list[Any] = []
            for _ in range((n + 9) // 10):
                user = await bench.service.create_user(bench.env)
                token, _ = await bench.service.create_session(bench.env, user.id)
                session = await bench.service.authenticate(bench.env, token)
                made = await recovery.recovery_codes(
                    bench.service, bench.request, session, generate_new=True
                )
                out.extend((session, code) for code in made["codes"])
            return out

        result: list[Any] = bench.run(issue())
        return result

    async def one(item: Any) -> dict[str, Any]:
        session, code = item
        return await recovery.verify_recovery(
            bench.service, session, code=code, requested_scopes=SCOPES, ip=None
        )

    _timed(report, bench, "recovery code: verify + mint", floor, Pool(make), one)
    _note_vs_insert(report, "recovery code: verify + mint", floor)


# --- TOTP ---------------------------------------------------------------------------------------
def _totp(report: Report, bench: Bench, signer: Ed25519PrivateKey, clock: FixedClock) -> None:
    report.section("TOTP (RFC 6238, SHA-1, ±1 step)")
    floor = "HOTP (pyotp) + Ed25519 sign"
    raw = os.urandom(20)
    report.measure(floor, lambda: (totp_at(raw, clock.now()), signer.sign(TOKEN_INPUT)), floor=True)
    core_state = TotpDeviceState(device_id="totp_bench", secret=generate_secret())
    core_raw = base64.b32decode(core_state.secret + "=" * (-len(core_state.secret) % 8))
    core_code = totp_at(core_raw, clock.now())
    now = clock.now()
    report.measure(
        "TOTP: core verify (sans-IO, 3 steps)",
        lambda: TotpMethod.complete(core_state, core_code, now=now),
        vs=floor,
    )

    # One device per call, each confirmed one step before the (then fixed) measuring time, so
    # the code of "now" is fresh for it and the clock stands still while timing.
    measuring_at = clock.now()

    def make(n: int) -> list[Any]:
        async def enrol() -> list[Any]:
            out: list[Any] = []
            clock.set(measuring_at - 30)
            for _ in range(n):
                user = await bench.service.create_user(bench.env)
                token, _ = await bench.service.create_session(bench.env, user.id)
                session = await bench.service.authenticate(bench.env, token)
                device = await totp.enroll_device(bench.service, bench.request, session, alias=None)
                raw = base64.b32decode(device["secret"] + "=" * (-len(device["secret"]) % 8))
                await totp.confirm_device(
                    bench.service,
                    session,
                    device_id=device["id"],
                    code=totp_at(raw, clock.now()),
                    ip=None,
                )
                out.append((session, raw))
            clock.set(measuring_at)
            return out

        result: list[Any] = bench.run(enrol())
        return result

    async def one(item: Any) -> dict[str, Any]:
        session, raw = item
        return await totp.verify_totp(
            bench.service,
            session,
            code=totp_at(raw, clock.now()),
            device_id=None,
            requested_scopes=SCOPES,
            ip=None,
        )

    _timed(report, bench, "TOTP: verify + mint", floor, Pool(make), one)
    _note_vs_insert(report, "TOTP: verify + mint", floor)


def _note_vs_insert(report: Report, name: str, floor: str) -> None:
    # performance.md G8 counts one INSERT in the floor; here that INSERT goes through aiosqlite.
    whole = report.find(name).median_s
    base = report.find(floor).median_s + report.find(INSERT).median_s
    report.note(f"{name}: {whole / base:.1f}x (raw crypto + one INSERT + commit)")
