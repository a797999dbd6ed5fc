"""The driver interface every verification method implements for the contract suite.

A driver knows how to earn one verification of its method over the real HTTP API, and how to
fail one; the suite (``test_contract.py``) attacks through these moves only, so a method passes
by its server-side rules, never by a driver being lenient. See ``README.md``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from fastapi import FastAPI

from stepguard.core.clock import FixedClock

__all__ = ["DRIVERS", "ContractContext", "MethodDriver", "register"]


@dataclass(slots=True)
class ContractContext:
    """What a driver gets: the running app, a client for it, its clock, and the services."""

    app: FastAPI
    client: httpx.AsyncClient
    clock: FixedClock
    #: ``_server_helpers.AdminApi`` over ``client``.
    admin: Any
    #: The aiosmtpd sink (``tests/_services.SmtpSink``) the app sends email to.
    smtp_sink: Any
    #: The Twilio-shaped SMS test double the app sends SMS to (``FakeTwilio``).
    sms: Any
    #: A user (alice@example.com, +14155550100) with a live session; ``.headers``, ``.environment_id``.
    user: Any


class MethodDriver(ABC):
    """One method as the contract suite sees it. Subclass, set the class attributes, register."""

    #: The id the suite's tests are parametrized with.
    name: ClassVar[str]
    #: Error codes a second, sequential submission of a response that already succeeded gets.
    reuse_codes: ClassVar[frozenset[str]] = frozenset({"code_used"})
    #: Whether challenges or responses expire; a method without expiry skips that test.
    expires: ClassVar[bool] = True
    #: Error codes for an expired challenge or response.
    expired_codes: ClassVar[frozenset[str]] = frozenset({"code_expired"})
    #: Consecutive failures after which the next attempt must be answered 429 (at the latest).
    throttle_after: ClassVar[int] = 6
    #: Scopes requested on every verify (a token must come back for them).
    scopes: ClassVar[list[str]] = ["wallet:export"]

    def __init__(self, ctx: ContractContext) -> None:
        self.ctx = ctx

    async def setup(self) -> None:
        """Enrol whatever the method needs for ``ctx.user`` (called once per test)."""

    @abstractmethod
    async def begin(self) -> Any:
        """Start one verification (send a code, fetch options...); returns the attempt handle."""

    @abstractmethod
    async def good(self, attempt: Any) -> Any:
        """A correct response for ``attempt``."""

    @abstractmethod
    async def bad(self, attempt: Any) -> Any:
        """A wrong response for ``attempt`` (well formed: it must fail on the server's check)."""

    @abstractmethod
    async def submit(self, attempt: Any, response: Any) -> httpx.Response:
        """Send ``response`` for ``attempt`` to the verify endpoint with ``self.scopes``."""

    async def expire(self, attempt: Any) -> None:
        """Make ``attempt`` (and its response) too old; the default moves the clock 11 minutes."""
        self.ctx.clock.advance(660)

    async def next_success(self) -> None:
        """Called before each success after the first (TOTP moves to a fresh time step)."""

    async def fail_once(self) -> httpx.Response:
        """One failed verification. Drivers whose challenges die after a few failures override
        this to start a new challenge when needed (a resend, which must not reset the count)."""
        attempt = await self.begin()
        return await self.submit(attempt, await self.bad(attempt))

    async def succeed(self) -> httpx.Response:
        """Try an honest verification; the response of whichever step refused, or the success."""
        await self.next_success()
        attempt = await self.begin()
        if isinstance(attempt, httpx.Response):  # begin was refused (e.g. a locked send)
            return attempt
        return await self.submit(attempt, await self.good(attempt))

    async def resend(self) -> None:
        """Start over as a user would after failures (new code); a no-op for stateless methods."""


DRIVERS: dict[str, type[MethodDriver]] = {}


def register(cls: type[MethodDriver]) -> type[MethodDriver]:
    """Class decorator: add a driver to the suite under ``cls.name``."""
    if cls.name in DRIVERS:
        raise ValueError(f"duplicate contract driver {cls.name!r}")
    DRIVERS[cls.name] = cls
    return cls
