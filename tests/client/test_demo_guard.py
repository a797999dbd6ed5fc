"""``client.http`` through the real guard: the demo wallet app's routes (``RequireStepUp``)."""

from __future__ import annotations

import pytest

from stepguard.client import PromptKind, ScriptedPrompter, StepUpRequired
from stepguard.core.tokens import unverified_claims


async def test_auto_retry_through_the_demo_apps_guard(sg) -> None:
    user = await sg.user()
    prompter = ScriptedPrompter([sg.code_answer()] * 5)
    # The demo app is mounted in the server's own app, so the same transport reaches it.
    client = sg.client(
        user, prompter=prompter, api_base_url=sg.url + "/demo", api_transport=sg.transport()
    )

    response = await sg.r(client.http.post("/api/profile", json={"display_name": "Alice"}))
    assert response.status_code == 200, response.text
    assert response.json()["profile"] == {"display_name": "Alice"}
    assert prompter.count(PromptKind.OTP_CODE) == 1
    # Time-bound: the next call reuses the token, no prompt.
    response = await sg.r(client.http.post("/api/profile", json={"display_name": "Al"}))
    assert response.status_code == 200 and prompter.count() == 1

    # Single-use wallet:export: one export per verification.
    sg.clock.advance(61)
    first = await sg.r(client.http.post("/api/wallet/export"))
    assert first.status_code == 200 and first.json()["private_key"].startswith("0x")
    assert prompter.count(PromptKind.OTP_CODE) == 2
    assert client.step_up_auth.get_elevated_access_token("wallet:export", consume=False) is None


async def test_guard_refuses_a_replayed_single_use_token(sg) -> None:
    user = await sg.user()
    client = sg.client(user, api_base_url=sg.url + "/demo", api_transport=sg.transport())
    await sg.r(client.step_up_auth.send_otp())
    token = await sg.r(
        client.step_up_auth.verify_otp(
            sg.last_code("alice@example.com"), requested_scopes=["wallet:export"]
        )
    )
    assert unverified_claims(token)["single_use"] is True
    headers = {"X-Elevated-Access-Token": token}
    ok = await sg.r(client.http.post("/api/wallet/export", headers=headers))
    assert ok.status_code == 200
    with pytest.raises(StepUpRequired) as caught:
        await sg.r(client.http.post("/api/wallet/export", headers=headers))
    assert caught.value.scope == "wallet:export"
    assert caught.value.reason == "elevated_token_used"
