"""The pure check, the challenge format and the verified-token cache, without HTTP."""

from __future__ import annotations

import json

import pytest
from guardkit import ALICE, ALICE_SESSION, AUDIENCE, BOB, ISSUER, NOW, Forge, make_guard

import stepguard.guard as guard_api
from stepguard.core.clock import FixedClock
from stepguard.core.errors import (
    AuthTooOld,
    ElevatedTokenExpired,
    ElevatedTokenInvalid,
    ElevatedTokenRequired,
    InvalidSession,
    ScopeNotGranted,
    SubjectMismatch,
)
from stepguard.core.tokens import verify_elevated_token
from stepguard.guard import (
    Principal,
    StepUpRequirement,
    VerifiedTokenCache,
    build_challenge,
    check_step_up,
)

ALICE_P = Principal(ALICE, ALICE_SESSION)


def verified(forge: Forge, **claims: object):  # type: ignore[no-untyped-def]
    return verify_elevated_token(
        forge.token(**claims),
        keys=forge.keyset,
        expected_issuer=ISSUER,
        expected_audience=AUDIENCE,
        now=NOW,
    )


def test_check_step_up_order_and_codes(forge: Forge) -> None:
    req = StepUpRequirement.of("user:update", max_age=60)
    token = verified(forge)
    check_step_up(token, req, principal=ALICE_P, now=NOW)
    with pytest.raises(ElevatedTokenExpired):
        check_step_up(token, req, principal=ALICE_P, now=NOW + 290 + 61)
    with pytest.raises(SubjectMismatch):
        check_step_up(token, req, principal=None, now=NOW)
    with pytest.raises(SubjectMismatch):
        check_step_up(token, req, principal=Principal(BOB), now=NOW)
    with pytest.raises(SubjectMismatch):
        check_step_up(token, req, principal=Principal(ALICE, "ses_other"), now=NOW)
    check_step_up(token, req, principal=Principal(ALICE), now=NOW)  # no session to compare
    with pytest.raises(ScopeNotGranted):
        check_step_up(
            token, StepUpRequirement.of("user:update wallet:sign"), principal=ALICE_P, now=NOW
        )
    with pytest.raises(AuthTooOld):
        check_step_up(token, req, principal=ALICE_P, now=NOW + 51)


def test_requirement_validation() -> None:
    assert StepUpRequirement.of(["a:b", "c:d"]).scope == "a:b c:d"
    assert StepUpRequirement.of("a:b  c:d").scopes == ("a:b", "c:d")
    for bad in ["", 'wal"let', "x\\y", "ü"]:
        with pytest.raises(ValueError):
            StepUpRequirement.of(bad)
    with pytest.raises(ValueError):
        StepUpRequirement.of("a:b", max_age=-1)


def test_challenge_header_and_problem_body() -> None:
    error = ElevatedTokenInvalid('bad "quoted"\\ detail\r\nInjected: yes')
    challenge = build_challenge(error, StepUpRequirement.of("wallet:export"))
    headers = challenge.header_dict()
    assert challenge.status == 401
    assert headers["Content-Type"] == "application/problem+json"
    www = headers["WWW-Authenticate"]
    assert www == (
        'Bearer error="insufficient_user_authentication", '
        'error_description="bad ?quoted?? detail??Injected: yes", scope="wallet:export"'
    )
    body = json.loads(challenge.body)
    assert body == {
        "type": "urn:stepguard:error:elevated_token_invalid",
        "title": "The elevated access token is not valid.",
        "status": 401,
        "detail": 'bad "quoted"\\ detail\r\nInjected: yes',
        "code": "elevated_token_invalid",
        "scope": "wallet:export",
    }


def test_challenge_for_freshness_and_from_error_extra() -> None:
    too_old = AuthTooOld()
    too_old.extra.update(scope="user:update", max_age=120)
    www = build_challenge(too_old).header_dict()["WWW-Authenticate"]
    assert www.endswith('scope="user:update", max_age=120')
    assert json.loads(build_challenge(too_old).body)["code"] == "elevated_token_expired"


def test_non_guard_errors_get_a_problem_body_without_a_step_up_challenge() -> None:
    challenge = build_challenge(InvalidSession())
    assert "WWW-Authenticate" not in challenge.header_dict()
    assert json.loads(challenge.body)["code"] == "invalid_session"


async def test_cache_hit_still_checks_expiry_subject_and_scope(forge: Forge) -> None:
    clock = FixedClock(NOW)
    guard = make_guard(forge, clock)
    token = forge.token()
    req = StepUpRequirement.of("user:update")
    await guard.authorize(token, req, principal=ALICE_P)
    assert len(guard.cache) == 1 and guard.cache.misses == 1
    await guard.authorize(token, req, principal=ALICE_P)
    assert guard.cache.hits == 1
    with pytest.raises(SubjectMismatch):
        await guard.authorize(token, req, principal=Principal(BOB))
    with pytest.raises(ScopeNotGranted):
        await guard.authorize(token, StepUpRequirement.of("wallet:sign"), principal=ALICE_P)
    clock.advance(290 + 61)
    with pytest.raises(ElevatedTokenExpired):
        await guard.authorize(token, req, principal=ALICE_P)
    assert len(guard.cache) == 0  # an expired entry is dropped
    assert guard.cache.hits == 4


async def test_cache_is_keyed_by_the_exact_token(forge: Forge) -> None:
    guard = make_guard(forge, FixedClock(NOW))
    token = forge.token()
    req = StepUpRequirement.of("user:update")
    await guard.authorize(token, req, principal=ALICE_P)
    head, payload, sig = token.split(".")
    other = "B" if sig[0] == "A" else "A"  # a different first character: always another token
    with pytest.raises(ElevatedTokenInvalid):
        await guard.authorize(f"{head}.{payload}.{other}{sig[1:]}", req, principal=ALICE_P)
    with pytest.raises(ElevatedTokenRequired):
        await guard.authorize(None, req, principal=ALICE_P)


def test_cache_is_bounded() -> None:
    forge = Forge()
    cache = VerifiedTokenCache(max_entries=3)
    tokens = [forge.token() for _ in range(5)]
    for t in tokens:
        cache.put(t, verify_elevated_token(t, keys=forge.keyset, expected_issuer=ISSUER,
                                           expected_audience=AUDIENCE, now=NOW))  # fmt: skip
    assert len(cache) == 3
    assert cache.get(tokens[0]) is None and cache.get(tokens[4]) is not None
    off = VerifiedTokenCache(max_entries=0)
    off.put(tokens[0], cache.get(tokens[4]))  # type: ignore[arg-type]
    assert len(off) == 0


def test_guard_configuration_is_validated(forge: Forge) -> None:
    with pytest.raises(ValueError):
        make_guard(forge, FixedClock(NOW), leeway=61)
    with pytest.raises(TypeError):
        guard_api._guard.as_principal(42)
    # An empty user id is "nobody signed in" (then subject_mismatch), not an error (a 500).
    assert guard_api._guard.as_principal("") is None
    assert guard_api._guard.as_principal("usr_a") == Principal("usr_a")


def test_public_surface_is_sorted_and_importable() -> None:
    # isort-style, like the rest of the package: CONSTANTS, then Classes, then functions.
    def kind(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert guard_api.__all__ == sorted(guard_api.__all__, key=kind)
    exported = {n for n in dir(guard_api) if not n.startswith("_") and n != "annotations"}
    assert exported - {"flask", "django"} == set(guard_api.__all__)
    for name in guard_api.__all__:
        assert getattr(guard_api, name) is not None
    assert {"RequireStepUp", "Guard", "check_step_up", "StepGuardSession"} <= set(guard_api.__all__)


async def test_a_repeated_multi_use_token_is_verified_once(
    forge: Forge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache spares the signature check, not the per-request checks; single-use tokens are
    verified on every presentation (they are never cached)."""
    from stepguard.guard import _guard

    calls: list[str] = []
    real = _guard.verify_elevated_token

    def counting(token: str | None, **kw: object):  # type: ignore[no-untyped-def]
        calls.append(token or "")
        return real(token, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(_guard, "verify_elevated_token", counting)
    guard = make_guard(forge, FixedClock(NOW))
    req = StepUpRequirement.of("user:update")
    token = forge.token()
    for _ in range(5):
        await guard.authorize(token, req, principal=ALICE_P)
    assert calls == [token]
    other = forge.token()
    await guard.authorize(other, req, principal=ALICE_P)
    assert calls == [token, other]
    once = forge.token(single_use=True)
    elevation = await guard.authorize(once, req, principal=ALICE_P)
    await guard.settle(elevation, success=False)
    await guard.authorize(once, req, principal=ALICE_P)
    assert calls == [token, other, once, once]


async def test_the_fastapi_dependency_runs_on_the_event_loop(forge: Forge) -> None:
    """``RequireStepUp`` is an ``async def`` dependency: FastAPI runs a plain ``def`` one in its
    threadpool (a thread hop per request, about a third of the throughput)."""
    import inspect
    import threading

    import httpx
    from guardkit import as_alice, make_app

    from stepguard.guard import RequireStepUp

    assert inspect.iscoroutinefunction(RequireStepUp("user:update").__call__)
    guard = make_guard(forge, FixedClock(NOW))
    seen: list[int] = []
    read_user = guard.current_user
    assert read_user is not None

    def current_user(request: object) -> object:
        seen.append(threading.get_ident())
        return read_user(request)

    guard.current_user = current_user
    transport = httpx.ASGITransport(app=make_app(guard))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/profile", headers=as_alice(forge.token()))
    assert response.status_code == 200
    assert seen == [threading.get_ident()]  # the test's own event-loop thread
