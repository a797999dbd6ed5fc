"""The sans-IO flows driven by hand and through httpx.MockTransport (no server), and the
fail-closed check against a real server that goes down."""

from __future__ import annotations

import httpx
import pytest

from _services import free_port
from stepguard.client import AsyncClient, Client, StepUpRequired, TokenStore
from stepguard.client import _flows as flows
from stepguard.client._models import Exclusive, PromptKind, PromptNeeded
from stepguard.core.challenge import StepUpChallenge
from stepguard.core.clock import FixedClock

from .test_store import NOW, jwt

URL = "http://sg.test"


def core(**kw) -> flows.ClientCore:
    return flows.ClientCore(URL, "env1", tokens=TokenStore(clock=FixedClock(NOW)), **kw)


def challenge(scope: str, code: str = "elevated_token_required") -> httpx.Response:
    ch = StepUpChallenge(code=code, title="Step-up required", description="step up", scope=scope)
    return httpx.Response(401, headers=ch.headers(), json=ch.problem())


def test_exchange_by_hand_prompts_once_then_retries_with_the_new_token() -> None:
    c = core(session_token="sess", prompter=object())  # type: ignore[arg-type]
    request = httpx.Request("POST", "http://api.test/profile")
    flow = flows.exchange(c, request)
    sent = next(flow)
    assert sent is request and sent.headers["authorization"] == "Bearer sess"
    assert "x-elevated-access-token" not in sent.headers
    step = flow.send(challenge("user:update"))
    assert isinstance(step, Exclusive) and step.key == "user:update"
    # The driver would run step.flow() under the lock; a token arrives meanwhile.
    token = jwt("user:update", NOW + 600)
    c.tokens.add(token)
    sub = step.flow()
    with pytest.raises(StopIteration) as done:  # a held token: no prompt at all
        next(sub)
    assert done.value.value == token
    retry = flow.send(done.value.value)  # the driver answers the sub-flow's result
    assert retry.headers["x-elevated-access-token"] == token
    with pytest.raises(StopIteration) as finished:
        flow.send(httpx.Response(200, json={"ok": True}))
    assert finished.value.value.status_code == 200
    assert c.endpoint_scopes[("POST", "http://api.test/profile")] == "user:update"


def test_exchange_raises_when_the_retry_is_challenged_again() -> None:
    c = core(session_token="sess", prompter=object())  # type: ignore[arg-type]
    c.tokens.add(jwt("user:update", NOW + 600))
    flow = flows.exchange(c, httpx.Request("POST", "http://api.test/profile"), scope="user:update")
    first = next(flow)
    assert first.headers["x-elevated-access-token"]
    step = flow.send(challenge("user:update", "elevated_token_invalid"))
    assert len(c.tokens) == 0  # the refused token is dropped
    assert isinstance(step, Exclusive)
    with pytest.raises(StepUpRequired) as caught:
        flow.send(jwt("user:update", NOW + 600))
        flow.send(challenge("user:update", "scope_not_granted"))
    assert caught.value.reason == "scope_not_granted"


def test_prompt_flow_by_hand_yields_the_code_prompt() -> None:
    c = core(session_token="sess", prompter=object())  # type: ignore[arg-type]
    flow = flows.prompt_reauthenticate(c, ["user:update"])
    check = next(flow)
    assert check.url.path == "/sdk/env1/step-up/check"
    cred = {"id": "cred_1", "format": "email", "type": "email", "alias": "a***e@x.com"}
    body = {"is_required": True, "credentials": [cred], "default_credential_id": "cred_1"}
    send = flow.send(httpx.Response(200, json=body))
    assert send.url.path == "/sdk/env1/otp/send"
    prompt = flow.send(
        httpx.Response(200, json={"verification_id": "v1", "destination": "a***e@x.com"})
    )
    assert isinstance(prompt, PromptNeeded) and prompt.kind is PromptKind.OTP_CODE
    assert prompt.destination == "a***e@x.com" and prompt.scopes == ("user:update",)
    verify = flow.send(" 123456 ")
    assert verify.url.path == "/sdk/env1/otp/verify"
    assert b'"code":"123456"' in verify.content.replace(b" ", b"")


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500, json={"code": "internal"}),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"is_required": "no"}),
        httpx.Response(200, json={"credentials": []}),
        httpx.Response(401, json={"code": "invalid_session", "error": "x"}),
    ],
)
def test_check_fails_closed_on_any_bad_answer(answer: httpx.Response) -> None:
    client = Client(URL, "env1", session_token="s", transport=httpx.MockTransport(lambda r: answer))
    with client:
        assert client.step_up_auth.is_step_up_required("wallet:export") is True


async def test_check_fails_closed_on_transport_errors_async() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with AsyncClient(
        URL, "env1", session_token="s", transport=httpx.MockTransport(boom)
    ) as client:
        assert await client.step_up_auth.is_step_up_required("wallet:export") is True
        check = await client.step_up_auth.check_step_up_auth("wallet:export")
        assert check.is_required and check.credentials == ()


async def test_check_fails_closed_with_the_server_down(tmp_path) -> None:
    """A real server answers "not required" (enforcement off); once it is down the check says
    required, sync and async alike, instead of silently skipping the step-up."""
    from stepguard.testing import StepGuardTestServer

    with StepGuardTestServer(tmp_path / "sg", policy={"enforcement": False}) as server:
        user = server.create_user()
        sync = server.client(user)
        async_client = server.async_client(user)
        assert sync.step_up_auth.is_step_up_required("wallet:export") is False
        assert await async_client.step_up_auth.is_step_up_required("wallet:export") is False
    # The server is gone (its port is closed now).
    assert sync.step_up_auth.is_step_up_required("wallet:export") is True
    assert await async_client.step_up_auth.is_step_up_required("wallet:export") is True
    sync.close()
    await async_client.aclose()
    # And a server that never was: connection refused.
    nowhere = Client(f"http://127.0.0.1:{free_port()}", "env1", session_token="s")
    with nowhere:
        assert nowhere.step_up_auth.is_step_up_required("wallet:export") is True
