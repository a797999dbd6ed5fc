"""Shared safety primitives: code generation, comparison, lockout and rate limiting."""

from __future__ import annotations

import secrets
from collections import Counter

import pytest

from stepguard.core.clock import FixedClock
from stepguard.core.errors import RateLimited
from stepguard.core.safety import (
    LockoutPolicy,
    LockoutState,
    RateLimiter,
    check_lockout,
    constant_time_equals,
    generate_numeric_code,
    record_failure,
    record_success,
)

NOW = 1_700_000_000.0

# --- generate_numeric_code ---------------------------------------------------------------


def test_code_is_one_uniform_draw_over_the_whole_code_space() -> None:
    bounds: list[int] = []

    def spy(bound: int) -> int:
        bounds.append(bound)
        return 42

    # One draw with bound exactly 10**digits is what makes the code free of modulo bias.
    assert generate_numeric_code(6, randbelow=spy) == "000042"
    assert generate_numeric_code(8, randbelow=spy) == "00000042"
    assert bounds == [10**6, 10**8]


@pytest.mark.parametrize("value, expected", [(0, "000000"), (999_999, "999999"), (7, "000007")])
def test_code_edges_are_zero_padded(value: int, expected: str) -> None:
    assert generate_numeric_code(randbelow=lambda _b: value) == expected


@pytest.mark.parametrize("digits", [0, 4, 5, 11])
def test_codes_shorter_than_six_digits_are_refused(digits: int) -> None:
    with pytest.raises(ValueError):
        generate_numeric_code(digits)


def test_out_of_range_random_source_is_refused() -> None:
    with pytest.raises(ValueError):
        generate_numeric_code(6, randbelow=lambda b: b)


def test_real_codes_are_digits_and_spread_over_leading_digits() -> None:
    codes = [generate_numeric_code() for _ in range(2000)]
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    leading = Counter(c[0] for c in codes)
    # Uniform: each leading digit ~200 times; a biased generator would starve some of them.
    assert set(leading) == set("0123456789")
    assert min(leading.values()) > 100
    assert len(set(codes)) > 1900


# --- constant_time_equals -----------------------------------------------------------------


def test_constant_time_equals() -> None:
    assert constant_time_equals("123456", "123456")
    assert constant_time_equals(b"ab", b"ab")
    assert constant_time_equals("ab", b"ab")
    assert not constant_time_equals("123456", "123457")
    assert not constant_time_equals("123456", "12345")
    # Non-ASCII input must be compared, not crash (hmac.compare_digest refuses non-ASCII str).
    assert not constant_time_equals("12345٦", "123456")
    assert constant_time_equals("é", "é")


# --- lockout ---------------------------------------------------------------------------------


def fail(state: LockoutState, times: int, *, now: float, policy: LockoutPolicy) -> LockoutState:
    for _ in range(times):
        state = record_failure(state, now=now, policy=policy)
    return state


def test_free_failures_do_not_lock() -> None:
    policy = LockoutPolicy(free_failures=5)
    state = fail(LockoutState(), 5, now=NOW, policy=policy)
    assert state.consecutive_failures == 5
    check_lockout(state, now=NOW, policy=policy)  # no raise


def test_delay_grows_exponentially_and_is_capped() -> None:
    policy = LockoutPolicy(free_failures=5, base_delay=30, max_delay=3600)
    delays = [policy.delay_after(n) for n in range(1, 16)]
    assert delays[:5] == [0, 0, 0, 0, 0]
    assert delays[5:10] == [30, 60, 120, 240, 480]
    assert delays[12:] == [3600, 3600, 3600]
    assert policy.delay_after(99) == 3600  # no overflow far out


def test_locked_authenticator_refuses_until_the_delay_passes() -> None:
    policy = LockoutPolicy(free_failures=2, base_delay=30, max_delay=3600)
    state = fail(LockoutState(), 3, now=NOW, policy=policy)
    assert state.locked_until == NOW + 30
    with pytest.raises(RateLimited) as info:
        check_lockout(state, now=NOW + 10, policy=policy)
    assert info.value.retry_after == pytest.approx(20)
    assert info.value.to_dict()["code"] == "rate_limited"
    assert info.value.to_dict()["retry_after"] == 20
    check_lockout(state, now=NOW + 30, policy=policy)  # delay over
    # The next failure locks for longer.
    state = record_failure(state, now=NOW + 30, policy=policy)
    assert state.locked_until == NOW + 30 + 60


def test_hard_cap_at_100_consecutive_failures_locks_until_reset() -> None:
    policy = LockoutPolicy()
    state = fail(LockoutState(), 99, now=NOW, policy=policy)
    later = NOW + 10 * 86_400  # long after any delay
    check_lockout(state, now=later, policy=policy)  # 99: still allowed once the delay passed
    state = record_failure(state, now=later, policy=policy)
    assert state.consecutive_failures == 100
    assert state.is_hard_locked(policy)
    for when in (later, later + 365 * 86_400):
        with pytest.raises(RateLimited) as info:
            check_lockout(state, now=when, policy=policy)
        assert info.value.extra["locked"] is True
    # Only a reset (a success cannot happen while locked; an admin re-binds) clears it.
    check_lockout(LockoutState(), now=later, policy=policy)


def test_hard_limit_cannot_exceed_nist_100() -> None:
    with pytest.raises(ValueError):
        LockoutPolicy(hard_limit=101)
    assert LockoutPolicy(hard_limit=10).hard_limit == 10


def test_success_resets_failures() -> None:
    policy = LockoutPolicy()
    state = fail(LockoutState(), 7, now=NOW, policy=policy)
    assert state.consecutive_failures == 7
    assert record_success(state) == LockoutState()


# --- rate limiter ------------------------------------------------------------------------------


def test_bucket_allows_a_burst_then_refuses_with_retry_after() -> None:
    clock = FixedClock(NOW)
    limiter = RateLimiter(capacity=3, refill_per_second=0.5, clock=clock)
    for _ in range(3):
        limiter.hit("user:alice")
    with pytest.raises(RateLimited) as info:
        limiter.hit("user:alice")
    assert info.value.retry_after == pytest.approx(2.0)
    # Another key has its own bucket.
    limiter.hit("user:bob")


def test_bucket_refills_with_time() -> None:
    clock = FixedClock(NOW)
    limiter = RateLimiter(capacity=2, refill_per_second=1 / 60, clock=clock)
    limiter.hit("k")
    limiter.hit("k")
    with pytest.raises(RateLimited):
        limiter.hit("k")
    clock.advance(59)
    with pytest.raises(RateLimited):
        limiter.hit("k")
    clock.advance(1)
    limiter.hit("k")  # one token back after 60 s
    with pytest.raises(RateLimited):
        limiter.hit("k")
    clock.advance(3600)
    assert limiter.remaining("k") == 2  # never above capacity


def test_refused_hits_do_not_spend_tokens() -> None:
    clock = FixedClock(NOW)
    limiter = RateLimiter(capacity=1, refill_per_second=1, clock=clock)
    limiter.hit("k")
    for _ in range(5):
        with pytest.raises(RateLimited):
            limiter.hit("k")
    clock.advance(1)
    limiter.hit("k")


def test_hit_all_is_all_or_nothing() -> None:
    clock = FixedClock(NOW)
    limiter = RateLimiter(capacity=2, refill_per_second=0.01, clock=clock)
    limiter.hit("ip:1.2.3.4")
    limiter.hit("ip:1.2.3.4")
    with pytest.raises(RateLimited):
        limiter.hit_all(["user:alice", "dest:a@example.com", "ip:1.2.3.4"])
    # The refusal on the IP did not drain the user's or the destination's bucket.
    assert limiter.remaining("user:alice") == 2
    assert limiter.remaining("dest:a@example.com") == 2


def test_clock_going_backwards_does_not_refill() -> None:
    clock = FixedClock(NOW)
    limiter = RateLimiter(capacity=1, refill_per_second=1, clock=clock)
    limiter.hit("k")
    clock.set(NOW - 1000)
    with pytest.raises(RateLimited):
        limiter.hit("k")


def test_idle_keys_are_evicted() -> None:
    clock = FixedClock(NOW)
    limiter = RateLimiter(capacity=5, refill_per_second=1, clock=clock)
    for i in range(1000):
        limiter.hit(f"ip:{i}")
    assert len(limiter) == 1000
    clock.advance(5)  # every bucket is full again
    limiter.hit("ip:new")
    assert len(limiter) == 1


def test_memory_is_bounded_under_a_flood_of_keys() -> None:
    clock = FixedClock(NOW)
    limiter = RateLimiter(capacity=1, refill_per_second=0.001, clock=clock, max_keys=100)
    keys = [f"ip:{secrets.token_hex(4)}:{i}" for i in range(10_000)]
    for key in keys:
        limiter.hit(key)
    assert len(limiter) == 100
    # The most recent keys are the ones kept, and they are still throttled.
    for key in keys[-100:]:
        with pytest.raises(RateLimited):
            limiter.hit(key)


@pytest.mark.parametrize(
    "capacity, refill, max_keys", [(0, 1, 10), (1, 0, 10), (1, -1, 10), (1, 1, 0)]
)
def test_bad_limiter_configuration_is_refused(
    capacity: float, refill: float, max_keys: int
) -> None:
    with pytest.raises(ValueError):
        RateLimiter(capacity, refill, FixedClock(NOW), max_keys=max_keys)
