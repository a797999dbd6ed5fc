"""Keys from the server's JWKS: cached by kid, refreshed in the background and on an unknown kid
(rate limited), rotated-out keys dropped; tokens minted by the real server's keyring."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from guard_server import PUBLIC_URL, START, ServerKit, running_server
from guardkit import Forge

from stepguard.core.clock import FixedClock
from stepguard.core.errors import ElevatedTokenInvalid
from stepguard.core.tokens import UnknownKeyId
from stepguard.guard import (
    Guard,
    JwksKeys,
    LocalKeys,
    MemoryReplayStore,
    Principal,
    StepUpRequirement,
)
from stepguard.server.keyring import RETIRED_KEY_GRACE

PROFILE = StepUpRequirement.of("user:update")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerKit]:
    async with running_server(tmp_path) as kit:
        yield kit


class CountingJwks(JwksKeys):
    """JwksKeys over the in-process server, counting the JWKS requests it makes."""

    def __init__(self, kit: ServerKit, **kw: float) -> None:
        self.fetches = 0

        async def count(request: httpx.Request) -> None:
            self.fetches += 1

        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=kit.app),
            base_url=PUBLIC_URL,
            event_hooks={"request": [count]},
        )
        super().__init__(kit.jwks_url, http=http, **kw)
        self._own_http = True


def guard_for(kit: ServerKit, keys: JwksKeys | LocalKeys, clock: FixedClock) -> Guard:
    return Guard(
        issuer=PUBLIC_URL,
        audience=kit.environment_id,
        keys=keys,
        replay_store=MemoryReplayStore(),
        clock=clock,
    )


async def test_server_minted_token_verifies_through_jwks(server: ServerKit) -> None:
    _, session = await server.sign_in()
    token = await server.mint(session, ["user:update"])
    keys = CountingJwks(server)
    guard = guard_for(server, keys, FixedClock(START))
    alice = Principal(session.user_id, session.id)
    elevation = await guard.authorize(token, PROFILE, principal=alice)
    assert elevation.subject == session.user_id and not elevation.single_use
    for _ in range(5):
        await guard.authorize(token, PROFILE, principal=alice)
    assert keys.fetches == 1  # loaded once, then served from memory
    assert guard.cache.hits == 5
    await guard.aclose()


async def test_new_kid_after_rotation_triggers_one_refresh(server: ServerKit) -> None:
    _, session = await server.sign_in()
    alice = Principal(session.user_id, session.id)
    keys = CountingJwks(server, min_interval=10.0)
    clock = FixedClock(START)
    guard = guard_for(server, keys, clock)
    await guard.authorize(await server.mint(session, ["user:update"]), PROFILE, principal=alice)
    await server.service.keyring.rotate()
    server.clock.advance(6)  # past the keyring's own 5 s snapshot
    rotated = await server.mint(session, ["user:update"])
    with pytest.raises(UnknownKeyId):  # the first load was under min_interval ago
        await guard.authorize(rotated, PROFILE, principal=alice)
    clock.advance(11)
    await guard.authorize(rotated, PROFILE, principal=alice)  # unknown kid -> refresh -> ok
    assert keys.fetches == 2
    await guard.aclose()


async def test_unknown_kid_refresh_is_rate_limited(server: ServerKit) -> None:
    keys = CountingJwks(server, min_interval=10.0)
    clock = FixedClock(START)
    guard = guard_for(server, keys, clock)
    forge = Forge()  # a key the server never had
    alice = Principal("usr_x")
    for _ in range(20):
        with pytest.raises(ElevatedTokenInvalid):
            await guard.authorize(forge.token(), PROFILE, principal=alice)
    assert keys.fetches == 1  # the first load; made-up kids within min_interval load nothing
    clock.advance(11)
    for _ in range(20):
        with pytest.raises(UnknownKeyId):
            await guard.authorize(forge.token(), PROFILE, principal=alice)
    assert keys.fetches == 2  # one refresh for the unknown kid per min_interval
    await guard.aclose()


async def test_rotated_out_key_is_dropped_after_the_grace_period(server: ServerKit) -> None:
    _, session = await server.sign_in()
    alice = Principal(session.user_id, session.id)
    token = await server.mint(session, ["user:update"])
    keys = CountingJwks(server, refresh_every=60.0)
    clock = FixedClock(START)
    guard = guard_for(server, keys, clock)
    await guard.authorize(token, PROFILE, principal=alice)  # verified and cached
    await server.service.keyring.rotate()
    # Within the grace period the retired key still verifies, after a refresh too.
    server.clock.advance(10)
    await keys.refresh(now=clock.now())
    await guard.authorize(token, PROFILE, principal=alice)
    # Past the grace period the server's JWKS no longer lists it; the guard's next refresh drops
    # it and the token fails although its own exp (judged by the guard's clock) is still ahead.
    server.clock.advance(RETIRED_KEY_GRACE + 1)
    await keys.refresh(now=clock.now())
    with pytest.raises(ElevatedTokenInvalid) as refused:
        await guard.authorize(token, PROFILE, principal=alice)
    assert refused.value.code == "elevated_token_invalid"
    await guard.aclose()


async def test_background_refresh_does_not_block_the_request(server: ServerKit) -> None:
    _, session = await server.sign_in()
    alice = Principal(session.user_id, session.id)
    token = await server.mint(session, ["user:update"])
    keys = CountingJwks(server, refresh_every=60.0)
    clock = FixedClock(START)
    guard = guard_for(server, keys, clock)
    await guard.authorize(token, PROFILE, principal=alice)
    loaded = keys.loaded_at
    clock.advance(61)
    await guard.authorize(token, PROFILE, principal=alice)  # served from the current keys
    assert keys.loaded_at == loaded  # the refresh was only scheduled
    for _ in range(200):  # the background task finishes on its own
        if keys.loaded_at == clock.now():
            break
        await asyncio.sleep(0.01)
    assert keys.loaded_at == clock.now() and keys.fetches == 2
    await guard.authorize(token, PROFILE, principal=alice)
    assert keys.fetches == 2  # one refresh per period, not one per request
    await guard.aclose()


async def test_failed_refresh_keeps_the_previous_keys(server: ServerKit) -> None:
    _, session = await server.sign_in()
    alice = Principal(session.user_id, session.id)
    token = await server.mint(session, ["user:update"])
    calls = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(200, json=server_jwks)
        return httpx.Response(503)

    server_jwks = (await server.http.get("/.well-known/jwks.json")).json()
    http = httpx.AsyncClient(transport=httpx.MockTransport(flaky))
    keys = JwksKeys(server.jwks_url, http=http, refresh_every=60.0)
    clock = FixedClock(START)
    guard = guard_for(server, keys, clock)
    await guard.authorize(token, PROFILE, principal=alice)
    clock.advance(61)
    assert await keys.refresh(now=clock.now()) is False
    guard.cache.clear()
    await guard.authorize(token, PROFILE, principal=alice)  # still verifies with the old keys
    await http.aclose()


async def test_local_keys_from_the_server_keyring(server: ServerKit) -> None:
    """The same-process option: no HTTP, keys re-read from the keyring on an unknown kid."""
    _, session = await server.sign_in()
    alice = Principal(session.user_id, session.id)
    keys = LocalKeys(server.service.keyring.keyset, min_interval=0.0)
    guard = guard_for(server, keys, FixedClock(START))
    await guard.authorize(await server.mint(session, ["user:update"]), PROFILE, principal=alice)
    await server.service.keyring.rotate()
    server.clock.advance(6)
    await guard.authorize(await server.mint(session, ["user:update"]), PROFILE, principal=alice)


def test_jwks_url_must_be_http() -> None:
    with pytest.raises(ValueError):
        JwksKeys("file:///etc/passwd")


@pytest.mark.parametrize("answer", ["down", "oversized", "not-jwks"])
async def test_no_keys_fails_closed(answer: str) -> None:
    """The JWKS cannot be loaded (server down, a document over 256 KiB, not a JWKS): every token
    is refused as invalid (a 401, never a 500 or an accepted token), and loading is retried at
    most once per ``min_interval``."""
    forge = Forge()
    jwk = forge.material.public_jwk()
    fetches = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal fetches
        fetches += 1
        if answer == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if answer == "oversized":
            return httpx.Response(200, json={"keys": [jwk], "pad": "x" * 300_000})
        return httpx.Response(200, json={"not": "a jwks"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    keys = JwksKeys("https://stepguard.test/.well-known/jwks.json", http=http, min_interval=10.0)
    clock = FixedClock(START)
    guard = Guard(
        issuer="https://stepguard.test",
        audience="env_test",
        keys=keys,
        replay_store=MemoryReplayStore(),
        clock=clock,
    )
    token = forge.token()
    for _ in range(5):
        with pytest.raises(ElevatedTokenInvalid) as refused:
            await guard.authorize(token, PROFILE, principal=Principal("usr_alice"))
        assert refused.value.code == "elevated_token_invalid"
    assert keys.keyset() is None and fetches == 1
    clock.advance(11)
    with pytest.raises(ElevatedTokenInvalid):
        await guard.authorize(token, PROFILE, principal=Principal("usr_alice"))
    assert fetches == 2
    await http.aclose()
