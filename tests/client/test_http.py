"""``client.http``: the session and the right elevated token attached, a step-up challenge
answered by prompting once and retrying once, one prompt for many concurrent challenged requests."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from stepguard.client import (
    SCOPE_EXTENSION,
    PromptKind,
    ScriptedPrompter,
    StepUpCancelled,
    StepUpRequired,
)

from .conftest import CountingTransport, protected_api


def code_prompter(sg, email: str = "alice@example.com", **kw) -> ScriptedPrompter:
    return ScriptedPrompter([lambda request: sg.last_code(email)] * 20, **kw)


async def test_without_prompter_a_challenge_raises_and_the_scope_is_learned(sg) -> None:
    user = await sg.user()
    async with protected_api(sg) as (url, transport, calls):
        counting = CountingTransport(transport)
        client = sg.client(user, api_base_url=url, api_transport=counting)
        assert (await sg.r(client.http.get("/public"))).json() == {"ok": True}
        with pytest.raises(StepUpRequired) as caught:
            await sg.r(client.http.post("/profile", json={"name": "x"}))
        assert caught.value.scope == "user:update"
        assert caught.value.reason == "elevated_token_required"
        assert calls == {}
        # Check, verify, proceed: the learned scope's token is attached on the first try.
        assert await sg.r(client.step_up_auth.is_step_up_required("user:update")) is True
        await sg.r(client.step_up_auth.send_otp())
        await sg.r(
            client.step_up_auth.verify_otp(
                sg.last_code("alice@example.com"), requested_scopes=["user:update"]
            )
        )
        before = len(counting.requests)
        response = await sg.r(client.http.post("/profile", json={"name": "x"}))
        assert response.status_code == 200 and response.json()["user"] == user.id
        assert len(counting.requests) == before + 1  # no challenge round trip
        assert counting.requests[-1].headers["authorization"] == f"Bearer {user.session_token}"
        assert calls == {"/profile": 1}


async def test_a_held_token_answers_the_first_challenge_of_an_unknown_endpoint(sg) -> None:
    """Check, verify, proceed with no declared scope: the README's quick start."""
    user = await sg.user()
    async with protected_api(sg) as (url, transport, calls):
        counting = CountingTransport(transport)
        client = sg.client(user, api_base_url=url, api_transport=counting)
        await sg.r(client.step_up_auth.send_otp())
        await sg.r(
            client.step_up_auth.verify_otp(
                sg.last_code("alice@example.com"), requested_scopes=["user:update"]
            )
        )
        before = len(counting.requests)
        response = await sg.r(client.http.post("/profile", json={"name": "x"}))
        assert response.status_code == 200 and response.json()["user"] == user.id
        # One challenged try without a token, then one retry with the token held for the scope.
        assert len(counting.requests) == before + 2
        assert counting.requests[-1].headers["x-elevated-access-token"]
        assert calls == {"/profile": 1}


async def test_with_prompter_a_challenge_prompts_verifies_and_retries_once(sg) -> None:
    user = await sg.user()
    prompter = code_prompter(sg)
    async with protected_api(sg) as (url, transport, calls):
        client = sg.client(user, api_base_url=url, api_transport=transport, prompter=prompter)
        response = await sg.r(client.http.post("/profile", json={"name": "x"}))
        assert response.status_code == 200
        assert prompter.count(PromptKind.OTP_CODE) == 1
        assert prompter.prompts[0].scopes == ("user:update",)
        # Time-bound token: reused with no prompt.
        for _ in range(3):
            assert (await sg.r(client.http.post("/profile"))).status_code == 200
        assert prompter.count() == 1 and calls == {"/profile": 4}


async def test_single_use_token_serves_one_request(sg) -> None:
    user = await sg.user()
    prompter = code_prompter(sg)
    async with protected_api(sg) as (url, transport, calls):
        client = sg.client(user, api_base_url=url, api_transport=transport, prompter=prompter)
        ext = {SCOPE_EXTENSION: "wallet:export"}
        assert (await sg.r(client.http.post("/wallet/export", extensions=ext))).status_code == 200
        assert len(client.tokens) == 0  # handed out once
        sg.clock.advance(61)  # the server throttles resending a code within a minute
        assert (await sg.r(client.http.post("/wallet/export", extensions=ext))).status_code == 200
        assert prompter.count(PromptKind.OTP_CODE) == 2 and calls == {"/wallet/export": 2}


async def test_replayed_single_use_token_is_refused_by_the_app(sg) -> None:
    user = await sg.user()
    async with protected_api(sg) as (url, transport, calls):
        client = sg.client(user, api_base_url=url, api_transport=transport)
        await sg.r(client.step_up_auth.send_otp())
        token = await sg.r(
            client.step_up_auth.verify_otp(
                sg.last_code("alice@example.com"), requested_scopes=["wallet:export"]
            )
        )
        headers = {"X-Elevated-Access-Token": token}
        assert (await sg.r(client.http.post("/wallet/export", headers=headers))).status_code == 200
        with pytest.raises(StepUpRequired) as caught:  # the same token again
            await sg.r(client.http.post("/wallet/export", headers=headers))
        assert caught.value.reason == "elevated_token_used"
        assert calls == {"/wallet/export": 1}


async def test_cancelled_prompt_raises_and_the_route_never_runs(sg) -> None:
    user = await sg.user()
    prompter = ScriptedPrompter([None])
    async with protected_api(sg) as (url, transport, calls):
        client = sg.client(user, api_base_url=url, api_transport=transport, prompter=prompter)
        with pytest.raises(StepUpCancelled):
            await sg.r(client.http.delete("/account"))
        assert calls == {} and len(client.tokens) == 0


async def test_ten_concurrent_challenged_requests_share_one_prompt(sg) -> None:
    user = await sg.user()
    # The prompt stays open a moment, so the other nine arrive while it is shown.
    prompter = code_prompter(sg, delay=0.2)
    async with protected_api(sg) as (url, transport, calls):
        client = sg.client(user, api_base_url=url, api_transport=transport, prompter=prompter)
        if sg.is_async:
            responses = await asyncio.gather(*(client.http.post("/profile") for _ in range(10)))
        else:
            with ThreadPoolExecutor(10) as pool:
                responses = list(pool.map(lambda _: client.http.post("/profile"), range(10)))
        assert [r.status_code for r in responses] == [200] * 10
        assert prompter.count() == 1
        assert calls == {"/profile": 10}


async def test_concurrent_single_use_requests_each_get_their_own_token(sg) -> None:
    """A single-use token serves one request: three concurrent exports need three
    verifications, one after the other, and all three get through (the one prompt per challenge
    holds for time-bound tokens only)."""
    user = await sg.user()
    prompter = code_prompter(sg, delay=0.05)
    async with protected_api(sg) as (url, transport, calls):
        client = sg.client(user, api_base_url=url, api_transport=transport, prompter=prompter)
        ext = {SCOPE_EXTENSION: "wallet:export"}
        if sg.is_async:
            responses = await asyncio.gather(
                *(client.http.post("/wallet/export", extensions=ext) for _ in range(3))
            )
        else:
            with ThreadPoolExecutor(3) as pool:
                responses = list(
                    pool.map(lambda _: client.http.post("/wallet/export", extensions=ext), range(3))
                )
        assert [r.status_code for r in responses] == [200] * 3
        assert prompter.count(PromptKind.OTP_CODE) == 3
        assert calls == {"/wallet/export": 3} and len(client.tokens) == 0
