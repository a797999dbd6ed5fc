"""The attack suite: every forged, stale, misdirected or malformed token is refused with its own
code, the handler never runs, and the answer is a 401 RFC 9470 challenge with a problem body.

Every request goes over real HTTP: one uvicorn server (in a thread) per module serves whichever
test app the test under way built, through the FastAPI ``RequireStepUp`` dependency."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import FastAPI
from guardkit import (
    ALICE,
    ALICE_SESSION,
    BOB,
    NOW,
    Calls,
    Forge,
    as_alice,
    b64,
    b64json,
    check_challenge,
    make_app,
    make_guard,
)

from _services import RunningServer, run_uvicorn_in_thread
from stepguard.core.keys import JwsAlgorithm, generate_key
from stepguard.core.tokens import TokenKeySet
from stepguard.guard import LocalKeys

ClientFor = Callable[[FastAPI], httpx.AsyncClient]


class Dispatch:
    """The module server's ASGI app: forwards each request to the current test's app."""

    def __init__(self) -> None:
        self.target: FastAPI | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.target is not None, "no test app is being served"
        await self.target(scope, receive, send)


@pytest.fixture(scope="module")
def http_server() -> Iterator[tuple[Dispatch, RunningServer]]:
    dispatch = Dispatch()
    with run_uvicorn_in_thread(dispatch, lifespan="off") as server:
        yield dispatch, server


@pytest.fixture
async def client_for(
    http_server: tuple[Dispatch, RunningServer],
) -> AsyncIterator[ClientFor]:
    """Serve the test's app on the module's uvicorn and talk to it over HTTP."""
    dispatch, server = http_server
    clients: list[httpx.AsyncClient] = []

    def make(app: FastAPI) -> httpx.AsyncClient:
        dispatch.target = app
        client = httpx.AsyncClient(base_url=server.url, timeout=10)
        clients.append(client)
        return client

    yield make
    dispatch.target = None
    for c in clients:
        await c.aclose()


def assert_challenge(
    response: httpx.Response,
    code: str,
    *,
    scope: str = "user:update",
    max_age: int | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """A 401 RFC 9470 challenge with ``code`` for ``scope`` (and ``max_age``), and nothing else.
    ``detail`` pins which check refused the token: several checks share one code, and a test
    must fail if its check is removed even when a later one would still refuse the token."""
    body = check_challenge(
        response.status_code, response.headers, response.content, code, scope=scope, max_age=max_age
    )
    if detail is not None:
        assert body["detail"] == detail, body
    return body


ALG = "algorithm not allowed for this key"


@pytest.fixture
def app(forge: Forge, clock: Any, calls: Calls) -> FastAPI:
    return make_app(make_guard(forge, clock), calls)


async def post(
    client: httpx.AsyncClient, token: str | None, path: str = "/profile"
) -> httpx.Response:
    return await client.post(path, headers=as_alice(token))


async def test_a_valid_token_passes(
    app: FastAPI, forge: Forge, client_for: ClientFor, calls: Calls
) -> None:
    response = await post(client_for(app), forge.token())
    assert response.status_code == 200
    assert response.json() == {"ok": True, "sub": ALICE}
    assert calls.handled == ["profile"]


async def test_missing_token(app: FastAPI, client_for: ClientFor, calls: Calls) -> None:
    assert_challenge(await post(client_for(app), None), "elevated_token_required")
    assert_challenge(await post(client_for(app), ""), "elevated_token_required")
    assert calls.handled == []


def _unsigned(forge: Forge, header: dict[str, Any], signature: str = "") -> str:
    return f"{b64json(header)}.{b64json(forge.claims())}.{signature}"


@pytest.mark.parametrize("signature", ["", "AAAA", "bm90IGEgc2lnbmF0dXJl"])
@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none(
    app: FastAPI, forge: Forge, client_for: ClientFor, calls: Calls, alg: str, signature: str
) -> None:
    token = _unsigned(forge, forge.header(alg=alg), signature)
    detail = ALG if signature else "malformed token"  # an empty segment is refused before
    assert_challenge(await post(client_for(app), token), "elevated_token_invalid", detail=detail)
    assert calls.handled == []


def _public_key_forms(forge: Forge) -> dict[str, bytes]:
    public = forge.private.public_key()
    jwk = forge.material.public_jwk()
    return {
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk": json.dumps(jwk).encode(),
        "jwk-sorted": json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode(),
        "raw": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "ssh": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
    }


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize("form", ["pem", "der", "jwk", "jwk-sorted", "raw", "ssh"])
async def test_hmac_signed_with_the_public_key(
    app: FastAPI, forge: Forge, client_for: ClientFor, calls: Calls, form: str, alg: str
) -> None:
    """Algorithm confusion (RFC 8725 §2.1, PyJWT CVE-2022-29217): an HMAC over the token keyed
    with our public key in any encoding must not verify."""
    secret = _public_key_forms(forge)[form]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = f"{b64json(forge.header(alg=alg))}.{b64json(forge.claims())}"
    mac = hmac.new(secret, signing_input.encode(), digest).digest()
    token = f"{signing_input}.{b64(mac)}"
    assert_challenge(await post(client_for(app), token), "elevated_token_invalid", detail=ALG)
    assert calls.handled == []


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "Ed25519", "eddsa", ""])
async def test_algorithm_other_than_the_pinned_one(
    app: FastAPI, forge: Forge, client_for: ClientFor, alg: str
) -> None:
    token = forge.token(forge.header(alg=alg))
    assert_challenge(await post(client_for(app), token), "elevated_token_invalid", detail=ALG)


def _swap(token: str, index: int, part: str) -> str:
    parts = token.split(".")
    parts[index] = part
    return ".".join(parts)


async def test_tampered_payload(
    app: FastAPI, forge: Forge, client_for: ClientFor, calls: Calls
) -> None:
    token = forge.token(sub=BOB)
    # Bob's validly signed token with the subject rewritten to Alice, signature kept.
    forged = _swap(token, 1, b64json(forge.claims(sub=ALICE)))
    bad = "bad signature"
    assert_challenge(await post(client_for(app), forged), "elevated_token_invalid", detail=bad)
    widened = _swap(forge.token(), 1, b64json(forge.claims(scope="user:update wallet:export")))
    assert_challenge(await post(client_for(app), widened), "elevated_token_invalid", detail=bad)
    extended = _swap(forge.token(), 1, b64json(forge.claims(exp=NOW + 86_400)))
    assert_challenge(await post(client_for(app), extended), "elevated_token_invalid", detail=bad)
    assert calls.handled == []


@pytest.mark.parametrize(
    "header",
    [
        {"typ": "JWT"},  # signed as a plain JWT
        {"kid": "another-kid"},
        {"jku": "https://evil.test/jwks.json"},
        {"x5u": "https://evil.test/cert.pem"},
        {"crit": ["exp"]},
        {"zip": "DEF"},
    ],
)
async def test_tampered_header(
    app: FastAPI, forge: Forge, client_for: ClientFor, header: dict[str, Any]
) -> None:
    token = forge.token()
    tampered = _swap(token, 0, b64json(forge.header(**header)))
    assert_challenge(await post(client_for(app), tampered), "elevated_token_invalid")


@pytest.mark.parametrize(
    "segment",
    [
        # The same header, serialised differently: every header check passes, so only the
        # signature (which covers the header bytes, RFC 7515 §5.2) can refuse it.
        lambda f: b64(json.dumps(f.header(), indent=1).encode()),
        lambda f: b64json(dict(reversed(list(f.header().items())))),
        lambda f: b64json(f.header(typ="application/elevated+jwt")),
        lambda f: b64json(f.header(typ="ELEVATED+JWT")),
    ],
    ids=["whitespace", "reordered", "typ-long-form", "typ-upper-case"],
)
async def test_tampered_header_caught_by_the_signature(
    app: FastAPI, forge: Forge, client_for: ClientFor, calls: Calls, segment: Any
) -> None:
    token = forge.token()
    tampered = _swap(token, 0, segment(forge))
    assert tampered != token
    body = assert_challenge(await post(client_for(app), tampered), "elevated_token_invalid")
    assert body["detail"] == "bad signature"
    # The same header when it is what was signed: accepted (so the refusal above is the signature).
    resigned = forge.sign(
        json.loads(base64.urlsafe_b64decode(segment(forge) + "==")), forge.claims()
    )
    assert (await post(client_for(app), resigned)).status_code == 200
    assert calls.handled == ["profile"]


async def test_embedded_jwk_header_is_not_trusted(
    app: FastAPI, forge: Forge, client_for: ClientFor
) -> None:
    """A token signed by the attacker's own key, which it embeds in the header (RFC 8725 §3.10)."""
    attacker = Forge()
    token = attacker.token(attacker.header(kid=forge.kid, jwk=attacker.material.public_jwk()))
    assert_challenge(await post(client_for(app), token), "elevated_token_invalid")


@pytest.mark.parametrize("flip", [0, 10, -1])
async def test_tampered_signature(
    app: FastAPI, forge: Forge, client_for: ClientFor, flip: int
) -> None:
    token = forge.token()
    head, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[flip] ^= 0x01
    assert_challenge(
        await post(client_for(app), f"{head}.{payload}.{b64(bytes(raw))}"),
        "elevated_token_invalid",
        detail="bad signature",
    )
    truncated = f"{head}.{payload}.{b64(bytes(raw[:32]))}"
    assert_challenge(
        await post(client_for(app), truncated), "elevated_token_invalid", detail="bad signature"
    )


async def test_signed_by_another_key_with_our_kid(
    app: FastAPI, forge: Forge, client_for: ClientFor
) -> None:
    impostor = Forge()
    token = impostor.token(impostor.header(kid=forge.kid))
    assert_challenge(
        await post(client_for(app), token), "elevated_token_invalid", detail="bad signature"
    )


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "jwt", "dpop+jwt", "elevated", None])
async def test_wrong_typ(
    app: FastAPI, forge: Forge, client_for: ClientFor, typ: str | None
) -> None:
    token = forge.token(forge.header(typ=typ))
    assert_challenge(
        await post(client_for(app), token), "elevated_token_invalid", detail="wrong token type"
    )


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://stepguard.test/"},  # exact match, no normalising
        {"iss": "https://evil.test"},
        {"iss": None},
        {"aud": "env_other"},
        {"aud": ["env_other", "env_more"]},
        {"aud": None},
    ],
    ids=["iss-slash", "iss-other", "iss-missing", "aud-other", "aud-list", "aud-missing"],
)
async def test_wrong_issuer_or_audience(
    app: FastAPI, forge: Forge, client_for: ClientFor, claims: dict[str, Any]
) -> None:
    detail = "wrong issuer" if "iss" in claims else "wrong audience"
    response = await post(client_for(app), forge.token(**claims))
    assert_challenge(response, "elevated_token_invalid", detail=detail)


async def test_audience_list_containing_ours_is_accepted(
    app: FastAPI, forge: Forge, client_for: ClientFor
) -> None:
    token = forge.token(aud=["env_other", "env_test"])
    assert (await post(client_for(app), token)).status_code == 200


async def test_expired_within_and_beyond_the_leeway(
    app: FastAPI, forge: Forge, client_for: ClientFor
) -> None:
    within = forge.token(iat=NOW - 400, exp=NOW - 59, auth_time=NOW - 400)
    assert (await post(client_for(app), within)).status_code == 200
    beyond = forge.token(iat=NOW - 400, exp=NOW - 61, auth_time=NOW - 400)
    assert_challenge(await post(client_for(app), beyond), "elevated_token_expired")


async def test_not_yet_valid_and_issued_in_the_future(
    app: FastAPI, forge: Forge, client_for: ClientFor
) -> None:
    client = client_for(app)
    early, future_iat = "token not yet valid", "token issued in the future"
    assert_challenge(
        await post(client, forge.token(nbf=NOW + 120)), "elevated_token_invalid", detail=early
    )
    assert (await post(client, forge.token(nbf=NOW + 30))).status_code == 200
    future = forge.token(iat=NOW + 120, exp=NOW + 400, auth_time=NOW + 120)
    assert_challenge(await post(client, future), "elevated_token_invalid", detail=future_iat)
    # At most 60 s of clock skew, on both sides of the boundary.
    assert (await post(client, forge.token(iat=NOW + 60, auth_time=NOW))).status_code == 200
    skewed = forge.token(iat=NOW + 61, auth_time=NOW)
    assert_challenge(await post(client, skewed), "elevated_token_invalid", detail=future_iat)
    assert (await post(client, forge.token(nbf=NOW + 60))).status_code == 200
    assert_challenge(
        await post(client, forge.token(nbf=NOW + 61)), "elevated_token_invalid", detail=early
    )


@pytest.mark.parametrize(
    "claims",
    [{"exp": None}, {"iat": None}, {"exp": "soon"}, {"exp": True}, {"sub": None}, {"sid": None},
     {"jti": None}, {"scope": None}, {"scope": ""}, {"single_use": None}, {"single_use": "yes"},
     {"auth_time": None}, {"amr": "otp"}],
    ids=lambda c: next(iter(c)) + "=" + repr(next(iter(c.values()))),
)  # fmt: skip
async def test_missing_or_malformed_claims(
    app: FastAPI, forge: Forge, client_for: ClientFor, claims: dict[str, Any]
) -> None:
    assert_challenge(await post(client_for(app), forge.token(**claims)), "elevated_token_invalid")


async def test_another_users_token(
    app: FastAPI, forge: Forge, client_for: ClientFor, calls: Calls
) -> None:
    body = assert_challenge(await post(client_for(app), forge.token(sub=BOB)), "subject_mismatch")
    assert "another user" in body["detail"]
    assert calls.handled == []


async def test_another_sessions_token(app: FastAPI, forge: Forge, client_for: ClientFor) -> None:
    client = client_for(app)
    token = forge.token(sid="ses_stolen")
    headers = as_alice(token, **{"X-Session": ALICE_SESSION})
    assert_challenge(await client.post("/profile", headers=headers), "subject_mismatch")
    ok = as_alice(forge.token(), **{"X-Session": ALICE_SESSION})
    assert (await client.post("/profile", headers=ok)).status_code == 200


async def test_nobody_signed_in(app: FastAPI, forge: Forge, client_for: ClientFor) -> None:
    response = await client_for(app).post(
        "/profile", headers={"X-Elevated-Access-Token": forge.token()}
    )
    assert_challenge(response, "subject_mismatch")


async def test_token_for_another_scope(
    app: FastAPI, forge: Forge, client_for: ClientFor, calls: Calls
) -> None:
    token = forge.token(scope="user:update wallet:sign")
    response = await post(client_for(app), token, "/export")
    assert_challenge(response, "scope_not_granted", scope="wallet:export")
    # A scope that merely contains the required one as a substring is not it.
    lookalike = forge.token(scope="wallet:export-all user:wallet:export")
    response = await post(client_for(app), lookalike, "/export")
    assert_challenge(response, "scope_not_granted", scope="wallet:export")
    assert calls.handled == []


async def test_route_needing_several_scopes(
    app: FastAPI, forge: Forge, client_for: ClientFor, calls: Calls
) -> None:
    """A token granting only part of a route's scopes is refused, and the challenge names all of
    them (the client steps up once for what it is told, then retries once)."""
    client = client_for(app)
    partial = forge.token(scope="user:update")
    response = await post(client, partial, "/sign-batch")
    assert_challenge(response, "scope_not_granted", scope="wallet:sign user:update")
    assert calls.handled == []
    both = forge.token(scope="user:update wallet:sign")
    assert (await post(client, both, "/sign-batch")).status_code == 200


async def test_max_age_against_auth_time(app: FastAPI, forge: Forge, client_for: ClientFor) -> None:
    client = client_for(app)
    stale = forge.token(auth_time=NOW - 61)
    assert (await post(client, stale)).status_code == 200  # /profile has no max_age
    assert_challenge(await post(client, stale, "/fresh"), "elevated_token_expired", max_age=60)
    assert (await post(client, forge.token(auth_time=NOW - 59), "/fresh")).status_code == 200
    # A missing token at a max_age route already tells the client how fresh it must be.
    assert_challenge(await post(client, None, "/fresh"), "elevated_token_required", max_age=60)


async def test_token_from_a_key_the_guard_does_not_hold(
    forge: Forge, clock: Any, client_for: ClientFor
) -> None:
    """A rotated-out key: once it is gone from the keyset, its tokens (even cached ones) fail."""
    old, new = forge, Forge()
    keys = TokenKeySet()
    keys.add_material(old.material)
    keys.add_material(new.material)
    source = LocalKeys(keys)
    app = make_app(make_guard(forge, clock, keys=source))
    client = client_for(app)
    token = old.token()
    assert (await post(client, token)).status_code == 200  # cached now
    keys.remove(old.kid)
    unknown = "The elevated access token was signed by an unknown key."
    assert_challenge(await post(client, token), "elevated_token_invalid", detail=unknown)
    assert (await post(client, new.token())).status_code == 200


async def test_es256_token_with_an_eddsa_header(
    forge: Forge, clock: Any, client_for: ClientFor
) -> None:
    ec = generate_key(JwsAlgorithm.ES256)
    keys = TokenKeySet()
    keys.add_material(ec)
    app = make_app(make_guard(forge, clock, keys=LocalKeys(keys)))
    token = forge.token(forge.header(kid=ec.kid))  # Ed25519 signature, kid of the P-256 key
    assert_challenge(await post(client_for(app), token), "elevated_token_invalid", detail=ALG)


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "a.b.c",
        "..",
        "a..c",
        "Bearer abc.def.ghi",
        "eyJ.eyJ.sig",
        "é.ü.ß",
        "%00%00.%ff.x",
        b64json([1, 2]) + "." + b64json({}) + ".AAAA",
        b64json("str") + "." + b64json({}) + ".AAAA",
        "x" * 9000,
        ("a" * 3000 + ".") * 2 + "a" * 3000,
        "a." * 5000,
    ],
    ids=lambda v: v[:20] + f"..({len(v)})",
)
async def test_garbage_and_oversized_headers(
    app: FastAPI, client_for: ClientFor, calls: Calls, value: str
) -> None:
    response = await client_for(app).post(
        "/profile", headers={"X-User": ALICE, "X-Elevated-Access-Token": value.encode("utf-8")}
    )
    assert_challenge(response, "elevated_token_invalid")
    assert calls.handled == []


async def test_a_raw_signature_forged_with_a_fresh_key_and_unknown_kid(
    app: FastAPI, client_for: ClientFor
) -> None:
    stranger = ed25519.Ed25519PrivateKey.generate()
    forge = Forge()
    signing_input = f"{b64json(forge.header(kid='no-such-kid'))}.{b64json(forge.claims())}"
    token = f"{signing_input}.{b64(stranger.sign(signing_input.encode()))}"
    assert_challenge(await post(client_for(app), token), "elevated_token_invalid")


async def test_header_far_beyond_what_the_http_server_reads(
    app: FastAPI, forge: Forge, client_for: ClientFor, calls: Calls
) -> None:
    """A token just over the guard's 8 KiB limit gets the guard's 401; a header far beyond what
    the HTTP server reads is refused before the app (never a 500, never the handler)."""
    client = client_for(app)
    assert_challenge(await post(client, "a" * 9000), "elevated_token_invalid")
    huge = await post(client, "a" * 200_000)
    assert 400 <= huge.status_code < 500
    assert calls.handled == []
    assert (await post(client_for(app), forge.token())).status_code == 200
    assert calls.handled == ["profile"]
