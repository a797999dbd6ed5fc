"""Contract drivers for the code-based methods: email OTP, SMS OTP, TOTP, recovery codes.

Codes are read where a person reads them: the email from the SMTP sink, the SMS from the
Twilio-shaped test double, TOTP computed from the enrolment secret, recovery codes as shown once.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
from _driver import MethodDriver, register
from methods._code_flows import auth_headers, enroll_totp, link_token, sdk, totp_code

PHONE = "+14155550100"


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


class _OtpDriver(MethodDriver):
    """Shared by email and SMS: a code per send, 5 tries per code, then a resend."""

    kind: ClassVar[str]
    per_code_attempts: ClassVar[int] = 5

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.credential_id: str | None = None
        self._current: dict[str, Any] | None = None
        self._tries = 0

    def read_code(self) -> str:
        raise NotImplementedError  # each channel reads its own inbox

    async def setup(self) -> None:
        r = await self.ctx.client.get(
            sdk(self.ctx.user.environment_id, "/credentials"), headers=self.ctx.user.headers
        )
        self.credential_id = next(
            c["id"] for c in r.json()["credentials"] if c["type"] == self.kind and c["verified"]
        )

    async def begin(self) -> Any:
        r = await self.ctx.client.post(
            sdk(self.ctx.user.environment_id, "/otp/send"),
            json={"credential_id": self.credential_id},
            headers=self.ctx.user.headers,
        )
        if r.status_code != 200:
            return r
        self._current, self._tries = (
            {"vid": r.json()["verification_id"], "code": self.read_code()},
            0,
        )
        return self._current

    async def good(self, attempt: Any) -> Any:
        return attempt["code"]

    async def bad(self, attempt: Any) -> Any:
        return _wrong(attempt["code"])

    async def submit(self, attempt: Any, response: Any) -> httpx.Response:
        return await self.ctx.client.post(
            sdk(self.ctx.user.environment_id, "/otp/verify"),
            json={
                "verification_id": attempt["vid"],
                "code": response,
                "requested_scopes": self.scopes,
            },
            headers=self.ctx.user.headers,
        )

    async def fail_once(self) -> httpx.Response:
        if self._current is None or self._tries >= self.per_code_attempts:
            started = await self.begin()
            if isinstance(started, httpx.Response):
                return started
        assert self._current is not None
        self._tries += 1
        return await self.submit(self._current, await self.bad(self._current))

    async def resend(self) -> None:
        started = await self.begin()
        assert not isinstance(started, httpx.Response), started.text


@register
class EmailOtpDriver(_OtpDriver):
    name = "email_otp"
    kind = "email"

    def read_code(self) -> str:
        return str(self.ctx.smtp_sink.last_code(to="alice@example.com"))


@register
class SmsOtpDriver(_OtpDriver):
    name = "sms_otp"
    kind = "phone"

    async def setup(self) -> None:
        env = self.ctx.user.environment_id
        await self.ctx.admin.set_policy(
            env,
            {"enabled_methods": ["email_otp", "sms_otp", "totp", "passkey", "recovery_code"]},
        )
        self.ctx.clock.advance(3)  # past the 2 s policy cache
        await super().setup()

    def read_code(self) -> str:
        return str(self.ctx.sms.last_code(PHONE))


@register
class TotpDriver(MethodDriver):
    name = "totp"
    expired_codes = frozenset({"invalid_code"})  # a code outside ±1 step is just wrong

    async def setup(self) -> None:
        env, tok = self.ctx.user.environment_id, self.ctx.user.session_token
        link = await link_token(self.ctx.client, env, tok, "alice@example.com", self.ctx.smtp_sink)
        device = await enroll_totp(self.ctx.client, env, tok, self.ctx.clock, elevated=link)
        self.secret = device["secret"]
        self._last_step: int | None = None  # enroll_totp already moved past its own step

    def _step(self) -> int:
        return int(self.ctx.clock.now() // 30)

    async def begin(self) -> Any:
        return {"code": totp_code(self.secret, self.ctx.clock)}

    async def good(self, attempt: Any) -> Any:
        self._last_step = self._step()
        return attempt["code"]

    async def bad(self, attempt: Any) -> Any:
        return _wrong(attempt["code"])

    async def submit(self, attempt: Any, response: Any) -> httpx.Response:
        return await self.ctx.client.post(
            sdk(self.ctx.user.environment_id, "/mfa/totp/verify"),
            json={"code": response, "requested_scopes": self.scopes},
            headers=self.ctx.user.headers,
        )

    async def expire(self, attempt: Any) -> None:
        self.ctx.clock.advance(90)  # the code's step is now two steps behind

    async def next_success(self) -> None:
        # Only when the current step was spent: moving time needlessly could end a lockout.
        if self._last_step is not None and self._step() <= self._last_step:
            self.ctx.clock.advance(30)


@register
class RecoveryCodeDriver(MethodDriver):
    name = "recovery_code"
    # A spent slot holds no digest, so a sequential replay looks like any wrong code.
    reuse_codes = frozenset({"invalid_code", "code_used"})
    expires = False  # look-up secrets do not expire (NIST 800-63B §5.1.2); regeneration voids

    async def setup(self) -> None:
        env, tok = self.ctx.user.environment_id, self.ctx.user.session_token
        link = await link_token(self.ctx.client, env, tok, "alice@example.com", self.ctx.smtp_sink)
        r = await self.ctx.client.post(
            sdk(env, "/mfa/recovery-codes"),
            json={"generate_new": True},
            headers=auth_headers(tok, link),
        )
        assert r.status_code == 200, r.text
        self.codes: list[str] = r.json()["codes"]

    async def begin(self) -> Any:
        return {"code": self.codes.pop(0)}

    async def good(self, attempt: Any) -> Any:
        return attempt["code"]

    async def bad(self, attempt: Any) -> Any:
        return "aaaa-bbbb-cccc-dddd-eeee-ffff"

    async def fail_once(self) -> httpx.Response:
        # A wrong code needs no challenge: keep the ten real ones for the successes.
        return await self.submit({}, await self.bad({}))

    async def submit(self, attempt: Any, response: Any) -> httpx.Response:
        return await self.ctx.client.post(
            sdk(self.ctx.user.environment_id, "/mfa/recovery/verify"),
            json={"code": response, "requested_scopes": self.scopes},
            headers=self.ctx.user.headers,
        )
