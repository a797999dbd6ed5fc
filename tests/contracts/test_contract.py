"""The contract every verification method passes, over HTTP, on SQLite and PostgreSQL.

Throttling after repeated failures, refusal of a reused response, refusal of an expired one, a
lockout that a resend does not reset, and exactly one success for concurrent submissions of one
response (NIST 800-63B §3.2.2, §5.1; ASVS 6.5.1, 6.6.3).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from _driver import MethodDriver


def _refused(r: httpx.Response, codes: frozenset[str] | set[str]) -> None:
    assert r.status_code in (400, 403), r.text
    assert r.json()["code"] in codes, r.text


def _minted(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    assert r.json()["elevated_access_token"]


async def test_throttles_after_repeated_failures(driver: MethodDriver) -> None:
    answers = []
    for _ in range(driver.throttle_after + 1):
        r = await driver.fail_once()
        answers.append(r.status_code)
        if r.status_code == 429:
            break
    assert answers[-1] == 429, answers
    assert set(answers[:-1]) <= {400}, answers
    retry_after = int(r.headers["Retry-After"])
    assert retry_after > 0 and r.json()["code"] == "rate_limited"
    # Locked means locked: an honest response is refused too until the delay is over.
    r = await driver.succeed()
    assert r.status_code == 429, r.text
    driver.ctx.clock.advance(retry_after + 1)
    _minted(await driver.succeed())


async def test_rejects_reuse(driver: MethodDriver) -> None:
    attempt = await driver.begin()
    response = await driver.good(attempt)
    _minted(await driver.submit(attempt, response))
    _refused(await driver.submit(attempt, response), driver.reuse_codes)


async def test_rejects_an_expired_challenge(driver: MethodDriver) -> None:
    if not driver.expires:
        pytest.skip(f"{driver.name} responses do not expire")
    attempt = await driver.begin()
    response = await driver.good(attempt)
    await driver.expire(attempt)
    _refused(await driver.submit(attempt, response), driver.expired_codes)


async def test_lockout_is_not_reset_by_a_resend(driver: MethodDriver) -> None:
    half = driver.throttle_after // 2
    for _ in range(half):
        assert (await driver.fail_once()).status_code == 400
    await driver.resend()
    statuses = []
    for _ in range(driver.throttle_after - half + 1):
        r = await driver.fail_once()
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    # The count carried over: the lock comes exactly when it would have without the resend
    # (a reset count would need ``throttle_after`` more failures).
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) <= {400}, statuses


async def test_concurrent_double_submit_gives_exactly_one_success(driver: MethodDriver) -> None:
    attempt = await driver.begin()
    response = await driver.good(attempt)
    results = await asyncio.gather(
        driver.submit(attempt, response), driver.submit(attempt, response)
    )
    assert sorted(r.status_code for r in results) == [200, 400], [r.text for r in results]
    loser = next(r for r in results if r.status_code != 200)
    assert loser.json()["code"] in driver.reuse_codes | {"code_used"}
