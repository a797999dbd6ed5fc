"""DESIGN.md's "Client SDK contract", name by name: every call in its code blocks binds to the
SDK's signatures (same parameter names, both clients), async methods are coroutines on
``AsyncClient`` and plain on ``Client``, and the records carry the fields the contract names."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import httpx
import pytest

import stepguard
from stepguard.client import StepUpCheck, TotpDevice

# (namespace, method, args, kwargs): the calls exactly as DESIGN.md and issue 5 write them.
CALLS: list[tuple[str, str, tuple[Any, ...], dict[str, Any]]] = [
    ("step_up_auth", "is_step_up_required", ("wallet:export",), {}),
    ("step_up_auth", "check_step_up_auth", ("wallet:export",), {}),
    ("step_up_auth", "prompt_step_up_auth", (), {"requested_scopes": ["wallet:export"]}),
    ("step_up_auth", "prompt_mfa", (), {"requested_scopes": ["wallet:export"]}),
    ("step_up_auth", "prompt_reauthenticate", (), {"requested_scopes": ["wallet:export"]}),
    ("step_up_auth", "send_otp", (), {"credential_id": None}),
    ("step_up_auth", "send_otp", (), {}),
    (
        "step_up_auth",
        "verify_otp",
        (),
        {"verification_token": "123456", "requested_scopes": ["wallet:export"]},
    ),
    ("step_up_auth", "verify_wallet", (), {"wallet_id": None, "requested_scopes": ["x:y"]}),
    ("step_up_auth", "verify_passkey_mfa", (), {"requested_scopes": ["wallet:export"]}),
    (
        "step_up_auth",
        "verify_totp_mfa",
        (),
        {"code": "123456", "device_id": None, "requested_scopes": ["wallet:export"]},
    ),
    ("step_up_auth", "verify_totp_mfa", ("123456", "dev_1"), {"requested_scopes": ["a:b"]}),
    ("step_up_auth", "verify_recovery_code", (), {"code": "abcd", "requested_scopes": ["a:b"]}),
    ("step_up_auth", "request_external_auth_elevated_token", ("jwt",), {}),
    ("step_up_auth", "reset_state", (), {}),
    ("step_up_auth", "clear_elevated_tokens", (), {}),
    ("mfa", "add_totp_device", (), {}),
    ("mfa", "verify_totp_device", (), {"device_id": "dev_1", "code": "123456"}),
    ("mfa", "list_devices", (), {}),
    ("mfa", "delete_device", ("dev_1",), {}),
    ("mfa", "get_recovery_codes", (), {"generate_new": False}),
    ("mfa", "register_passkey", (), {}),
    ("wallets", "link", (object(),), {}),
]

# The reference treats requested_scopes as optional on every verify and prompt method.
SCOPED = [
    ("prompt_step_up_auth", ()),
    ("prompt_mfa", ()),
    ("prompt_reauthenticate", ()),
    ("verify_otp", ("123456",)),
    ("verify_wallet", ()),
    ("verify_passkey_mfa", ()),
    ("verify_totp_mfa", ("123456",)),
    ("verify_recovery_code", ("abcd",)),
]

NOT_ASYNC = {"set_session", "get_elevated_access_token"}


@pytest.fixture(params=["AsyncClient", "Client"])
def client(request: pytest.FixtureRequest) -> Any:
    cls = getattr(stepguard, request.param)
    made = cls(base_url="http://sg.test", environment_id="env1")
    yield made
    if isinstance(made.http, httpx.Client):
        made.close()


@pytest.mark.parametrize(("namespace", "name", "args", "kwargs"), CALLS)
def test_design_calls_bind(
    client: Any, namespace: str, name: str, args: tuple, kwargs: dict
) -> None:
    method = getattr(getattr(client, namespace), name)
    inspect.signature(method).bind(*args, **kwargs)  # TypeError on a renamed parameter
    is_async = isinstance(client, stepguard.AsyncClient)
    assert inspect.iscoroutinefunction(method) is is_async, name


@pytest.mark.parametrize(("name", "args"), SCOPED)
def test_requested_scopes_is_an_optional_keyword(client: Any, name: str, args: tuple) -> None:
    signature = inspect.signature(getattr(client.step_up_auth, name))
    signature.bind(*args)
    assert signature.parameters["requested_scopes"].default is None


def test_client_level_names(client: Any) -> None:
    inspect.signature(client.set_session).bind("session-token")
    inspect.signature(client.set_session).bind(session_token="session-token")
    assert not inspect.iscoroutinefunction(client.set_session)
    expected = httpx.AsyncClient if isinstance(client, stepguard.AsyncClient) else httpx.Client
    assert isinstance(client.http, expected)
    assert client.environment_id == "env1"


def test_records_carry_the_contract_fields() -> None:
    assert {f.name for f in dataclasses.fields(StepUpCheck)} >= {
        "is_required",
        "credentials",
        "default_credential_id",
    }
    assert {f.name for f in dataclasses.fields(TotpDevice)} >= {"id", "secret", "uri"}


def test_errors_are_exported_and_carry_codes() -> None:
    assert issubclass(stepguard.StepUpCancelled, stepguard.ClientError)
    assert stepguard.StepUpRequired("wallet:export").scope == "wallet:export"
    codes = {
        "InvalidCode": "invalid_code",
        "CodeExpired": "code_expired",
        "RateLimited": "rate_limited",
        "MethodNotAllowed": "method_not_allowed",
        "MfaRequired": "mfa_required",
        "NoMethodsAvailable": "no_methods_available",
    }
    for name, code in codes.items():
        cls = getattr(stepguard, name)
        assert issubclass(cls, stepguard.VerificationError) and cls.code == code
        assert cls("x").code == code
