"""Shared safety primitives: code generation, constant-time comparison, lockout, rate limiting.

Every verification method and the server use these, so throttling and comparison rules live once
(the django-otp ``ThrottlingMixin`` idea).

Two layers of brute-force protection, both required by NIST SP 800-63B §3.2.2:

* **Consecutive-failure lockout per authenticator** (:class:`LockoutState`, pure data): a few
  free tries, then a growing delay, and at :attr:`LockoutPolicy.hard_limit` (100) consecutive
  failures the authenticator stays locked until an administrator resets it (re-binding). Only a
  successful verification (:func:`record_success`) or that reset clears the count. **Sending or
  resending a code must not reset it** (NIST 3.1.3.2: "generating a new secret SHALL NOT reset
  the failure count"); the server keeps one state per authenticator (email address, phone, TOTP
  device, recovery-code set), never per challenge.
* **Request throttling** (:class:`RateLimiter`): an in-memory token bucket keyed by any string, for
  send/resend per user, per destination and per trusted client IP (ASVS 6.6.3, 2.4.1, 15.3.4).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stepguard.core.clock import Clock
from stepguard.core.errors import RateLimited

__all__ = [
    "MIN_CODE_DIGITS",
    "LockoutPolicy",
    "LockoutState",
    "RateLimiter",
    "check_lockout",
    "constant_time_equals",
    "generate_numeric_code",
    "record_failure",
    "record_success",
]

#: NIST 800-63B §3.1.3.2 / ASVS 6.5.4: at least 6 decimal digits.
MIN_CODE_DIGITS = 6
#: Longer numeric codes are hard to type; use a base32 secret instead (as recovery codes do).
MAX_CODE_DIGITS = 10


def generate_numeric_code(
    digits: int = 6, *, randbelow: Callable[[int], int] = secrets.randbelow
) -> str:
    """A uniformly random, zero-padded decimal code of ``digits`` digits (at least 6).

    One draw of ``randbelow(10**digits)`` from a CSPRNG covers the whole code space exactly, so
    there is no modulo bias (reducing a random byte string ``% 10**digits`` would favour low codes).
    Raises ``ValueError`` for a configuration below the NIST floor (a programming error, not a
    verification outcome).
    """
    if not MIN_CODE_DIGITS <= digits <= MAX_CODE_DIGITS:
        raise ValueError(f"codes must have {MIN_CODE_DIGITS} to {MAX_CODE_DIGITS} digits")
    bound = 10**digits
    value = randbelow(bound)
    if not 0 <= value < bound:
        raise ValueError("randbelow returned a value outside [0, bound)")
    return str(value).zfill(digits)


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compare two secrets in time independent of where they differ (ASVS 11.2.4).

    ``str`` is UTF-8 encoded first: :func:`hmac.compare_digest` refuses non-ASCII ``str``, and user
    input may contain anything.
    """
    a_bytes = a.encode() if isinstance(a, str) else a
    b_bytes = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)


# --------------------------------------------------------------------------------------------
# Consecutive-failure lockout (pure data + functions; the server persists the state)


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """How failures turn into delays.

    Defaults: 5 free failures, then 30 s doubling per further failure up to 1 h (the "30 s up to
    1 h" example of NIST 3.2.2), and a hard lock at 100 consecutive failures.
    """

    free_failures: int = 5
    base_delay: float = 30.0
    max_delay: float = 3600.0
    #: NIST 800-63B §3.2.2: never more than 100 consecutive failed attempts per authenticator.
    hard_limit: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.hard_limit <= 100:
            raise ValueError("hard_limit must be between 1 and 100 (NIST 800-63B 3.2.2)")
        if self.free_failures < 0 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("invalid lockout delays")

    def delay_after(self, failures: int) -> float:
        """Seconds the authenticator is locked after its ``failures``-th consecutive failure."""
        extra = failures - self.free_failures
        if extra <= 0:
            return 0.0
        # Exponent capped so the float never overflows; the delay is capped anyway.
        return min(self.max_delay, self.base_delay * 2.0 ** min(extra - 1, 64))


DEFAULT_LOCKOUT = LockoutPolicy()


@dataclass(frozen=True, slots=True)
class LockoutState:
    """Failure bookkeeping of one authenticator. ``LockoutState()`` is the fresh (reset) state."""

    consecutive_failures: int = 0
    #: Unix time before which every attempt is refused.
    locked_until: float = 0.0

    def is_hard_locked(self, policy: LockoutPolicy = DEFAULT_LOCKOUT) -> bool:
        """Whether the 100-failure cap was reached (only an administrator reset unlocks)."""
        return self.consecutive_failures >= policy.hard_limit


def check_lockout(
    state: LockoutState, *, now: float, policy: LockoutPolicy = DEFAULT_LOCKOUT
) -> None:
    """Refuse an attempt while the authenticator is locked; call it *before* verifying.

    Raises :class:`RateLimited` with ``retry_after`` seconds, or with ``locked=True`` (and the
    longest delay as ``retry_after``) once the hard cap is reached: waiting does not help then.
    """
    if state.is_hard_locked(policy):
        raise RateLimited(
            "Too many failed attempts: this authenticator is locked until it is reset.",
            retry_after=policy.max_delay,
            locked=True,
        )
    if now < state.locked_until:
        raise RateLimited(retry_after=state.locked_until - now)


def record_failure(
    state: LockoutState, *, now: float, policy: LockoutPolicy = DEFAULT_LOCKOUT
) -> LockoutState:
    """The state after one more failed attempt (growing delay, then the hard cap)."""
    failures = state.consecutive_failures + 1
    delay = policy.delay_after(failures)
    locked_until = max(state.locked_until, now + delay) if delay > 0 else state.locked_until
    return LockoutState(consecutive_failures=failures, locked_until=locked_until)


def record_success(state: LockoutState) -> LockoutState:
    """The state after a successful verification: prior failures are disregarded (NIST 3.2.2).

    Never call this on a resend or a new challenge, only on a verified response.
    """
    del state  # the result does not depend on the old state; the parameter documents the call
    return LockoutState()


# --------------------------------------------------------------------------------------------
# Request throttling


class RateLimiter:
    """In-memory token buckets keyed by string (e.g. ``"send:user:<id>"``, ``"send:ip:<addr>"``).

    Each key holds up to ``capacity`` tokens, refilled at ``refill_per_second``; a hit spends one.
    Memory is bounded: a bucket that has refilled completely carries no information and is dropped,
    and beyond ``max_keys`` live buckets the least recently used is evicted (its key then starts
    full again, which is why ``max_keys`` should exceed the number of keys active in one refill
    period). Per process: with several workers each has its own buckets.
    """

    def __init__(
        self,
        capacity: float,
        refill_per_second: float,
        clock: Clock,
        *,
        max_keys: int = 100_000,
    ) -> None:
        if capacity < 1 or refill_per_second <= 0 or max_keys < 1:
            raise ValueError("capacity >= 1, refill_per_second > 0 and max_keys >= 1 are required")
        self.capacity = float(capacity)
        self.refill_per_second = float(refill_per_second)
        self.max_keys = max_keys
        self._clock = clock
        # key -> (tokens at `updated`, updated); ordered by last update, oldest first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: str, now: float) -> float:
        entry = self._buckets.get(key)
        if entry is None:
            return self.capacity
        tokens, updated = entry
        # max(0, ...): a clock that steps backwards must not drain or overfill a bucket.
        return min(self.capacity, tokens + max(0.0, now - updated) * self.refill_per_second)

    def _evict(self, now: float) -> None:
        while self._buckets:
            oldest = next(iter(self._buckets))
            if self._tokens(oldest, now) >= self.capacity:
                del self._buckets[oldest]  # idle: full again, nothing to remember
            elif len(self._buckets) > self.max_keys:
                del self._buckets[oldest]  # over budget: least recently used goes
            else:
                return

    def remaining(self, key: str) -> float:
        """Tokens currently available for ``key`` (without spending any)."""
        with self._lock:
            return self._tokens(key, self._clock.now())

    def hit(self, key: str, cost: float = 1.0) -> None:
        """Spend ``cost`` tokens for ``key`` or raise :class:`RateLimited` with ``retry_after``."""
        # The single-key path of hit_all, kept lean: it runs before every send and verify.
        if cost > self.capacity:
            raise ValueError("cost exceeds the bucket capacity")
        with self._lock:
            now = self._clock.now()
            level = self._tokens(key, now)
            if level < cost:
                raise RateLimited(retry_after=(cost - level) / self.refill_per_second)
            self._buckets[key] = (level - cost, now)
            self._buckets.move_to_end(key)
            self._evict(now)

    def hit_all(self, keys: Iterable[str], cost: float = 1.0) -> None:
        """Spend ``cost`` from every key, or from none if any bucket is short.

        All-or-nothing, so a request refused for its IP does not also drain the user's bucket.
        """
        keys = list(dict.fromkeys(keys))
        if cost > self.capacity:
            raise ValueError("cost exceeds the bucket capacity")
        with self._lock:
            now = self._clock.now()
            levels = {key: self._tokens(key, now) for key in keys}
            short = [cost - level for level in levels.values() if level < cost]
            if short:
                raise RateLimited(retry_after=max(short) / self.refill_per_second)
            for key, level in levels.items():
                self._buckets[key] = (level - cost, now)
                self._buckets.move_to_end(key)
            self._evict(now)

    def reset(self, key: str) -> None:
        """Forget ``key`` (its bucket starts full)."""
        with self._lock:
            self._buckets.pop(key, None)
