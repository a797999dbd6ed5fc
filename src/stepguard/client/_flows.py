"""The SDK's logic, written once as sans-IO generators (STYLE.md 2, the httpx auth-flow pattern).

Each public operation is a generator function taking the :class:`ClientCore` (configuration and
state) and yielding effects (:mod:`._models`); :mod:`._drivers` runs them with a sync or an async
httpx client. Nothing here performs I/O or reads the wall clock, so every path can be driven by
hand in a test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import httpx

from stepguard.client._adapters import (
    Authenticator,
    Prompter,
    WalletSigner,
    as_signer,
    encode_signature,
)
from stepguard.client._errors import (
    ApiError,
    ClientError,
    CodeExpired,
    CodeUsed,
    InvalidCode,
    NoMethodsAvailable,
    OtpNotInitiated,
    PrompterMissing,
    RateLimited,
    StepUpCancelled,
    challenge_of,
    error_from_response,
)
from stepguard.client._models import (
    CONTINUE_IN_BROWSER,
    RESEND_CODE,
    Call,
    Credential,
    Exclusive,
    Flow,
    MfaDevice,
    OtpVerification,
    PromptKind,
    PromptNeeded,
    RecoveryCodes,
    Session,
    StepUpCheck,
    StepUpState,
    TotpDevice,
)
from stepguard.client._store import TokenStore
from stepguard.core.challenge import ELEVATED_TOKEN_HEADER
from stepguard.core.scopes import TokenScope

__all__ = ["SCOPE_EXTENSION", "ClientCore"]

T = TypeVar("T")

#: ``client.http.post(url, extensions={SCOPE_EXTENSION: "wallet:export"})`` declares the scope.
SCOPE_EXTENSION = "stepguard_scope"
LINK = TokenScope.CREDENTIAL_LINK.value
UNLINK = TokenScope.CREDENTIAL_UNLINK.value
CODE_ATTEMPTS = 3
USER_AGENT = "stepguard-python/0.1"
_NOT_REQUIRED = StepUpCheck(is_required=False)
_REQUIRED = StepUpCheck(is_required=True)
_MFA_CLOSED = "MFA view closed"
_REAUTH_CLOSED = "Reauthentication flow closed"


def _address_key(address: str) -> str:
    # Ethereum addresses are case-insensitive (EIP-55 case is only a checksum); Solana's are not.
    return address.lower() if address[:2] in ("0x", "0X") else address


class ClientCore:
    """Configuration and state shared by a client's namespaces (no I/O here)."""

    def __init__(
        self,
        base_url: str,
        environment_id: str,
        *,
        tokens: TokenStore,
        prompter: Prompter | None = None,
        authenticator: Authenticator | None = None,
        session_token: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.environment_id = environment_id
        self.sdk_url = f"{self.base_url}/sdk/{environment_id}"
        self.tokens = tokens
        self.prompter = prompter
        self.authenticator = authenticator
        self.state = StepUpState()
        self.session_token: str | None = None
        self.sign_in_pending: OtpVerification | None = None
        self.signers: dict[str, WalletSigner] = {}
        #: Scope learned from a challenge, per (method, URL without query).
        self.endpoint_scopes: dict[tuple[str, str], str] = {}
        if session_token:
            self.set_session(session_token)

    def set_session(self, session_token: str | None) -> None:
        """Use ``session_token``; tokens and flow state of another session are forgotten."""
        if session_token != self.session_token:
            self.state = StepUpState()
            self.sign_in_pending = None
        self.session_token = session_token
        self.tokens.bind(session_token)

    def request(
        self, method: str, path: str, *, json: Any = None, authorized: bool = True
    ) -> httpx.Request:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if authorized and self.session_token:
            headers["Authorization"] = f"Bearer {self.session_token}"
        return httpx.Request(method, self.sdk_url + path, json=json, headers=headers)

    def add_signer(self, signer: Any) -> WalletSigner:
        adapted = as_signer(signer)
        self.signers[_address_key(adapted.address)] = adapted
        return adapted


# -- plumbing -------------------------------------------------------------------------------------
def _ok(response: httpx.Response) -> dict[str, Any]:
    if not response.is_success:
        raise error_from_response(response)
    try:
        data = response.json()
    except ValueError:
        raise ApiError(
            "the server's answer is not JSON", http_status=response.status_code
        ) from None
    if not isinstance(data, dict):
        raise ApiError("the server's answer is not an object", http_status=response.status_code)
    return data


def _endpoint(request: httpx.Request) -> tuple[str, str]:
    return request.method, str(request.url.copy_with(query=None, fragment=None))


def _attach(core: ClientCore, request: httpx.Request, scope: str | None) -> str | None:
    token = core.tokens.take(scope) if scope else None
    if token is not None:
        request.headers[ELEVATED_TOKEN_HEADER] = token
    else:
        request.headers.pop(ELEVATED_TOKEN_HEADER, None)
    return token


def exchange(
    core: ClientCore, request: httpx.Request, *, scope: str | None = None
) -> Flow[httpx.Response]:
    """Send ``request`` with the session and the elevated token for its scope; answer a step-up
    challenge by stepping up (one prompt per scope, shared) and retrying once.

    The scope is the one declared (argument, or the request extension), else the one learned from
    an earlier challenge of this endpoint. Without a prompter a challenge raises
    :class:`StepUpRequired`, as does a retry that is challenged again.
    """
    key = _endpoint(request)
    declared = request.extensions.get(SCOPE_EXTENSION)
    scope = scope or (declared if isinstance(declared, str) else None)
    scope = scope or core.endpoint_scopes.get(key)
    if core.session_token and "authorization" not in request.headers:
        request.headers["Authorization"] = f"Bearer {core.session_token}"
    preset = request.headers.get(ELEVATED_TOKEN_HEADER)  # the caller's own token wins
    sent = preset if preset is not None else _attach(core, request, scope)
    response: httpx.Response = yield request
    challenge = challenge_of(response)
    if challenge is None:
        return response
    if sent is not None:
        core.tokens.discard(sent)  # refused: expired, used, revoked or not enough
    if not challenge.scope:
        raise challenge
    core.endpoint_scopes[key] = challenge.scope
    if sent is None and preset is None:
        # The scope was only learned now: a token already held for it (e.g. from verify_otp)
        # answers the challenge without any prompt.
        held = _attach(core, request, challenge.scope)
        if held is not None:
            response = yield request
            again = challenge_of(response)
            if again is None:
                return response
            core.tokens.discard(held)
            challenge = again
            request.headers.pop(ELEVATED_TOKEN_HEADER, None)
    if core.prompter is None:
        raise challenge
    wanted = challenge.scopes
    token: str = yield Exclusive(challenge.scope, lambda: _elevate(core, wanted))
    request.headers[ELEVATED_TOKEN_HEADER] = token
    response = yield request
    again = challenge_of(response)
    if again is not None:
        raise again
    return response


def call(
    core: ClientCore,
    method: str,
    path: str,
    *,
    json: Any = None,
    scope: str | None = None,
    authorized: bool = True,
) -> Flow[dict[str, Any]]:
    """One SDK API call through :func:`exchange`; the JSON answer or the mapped error."""
    request = core.request(method, path, json=json, authorized=authorized)
    response = yield from exchange(core, request, scope=scope)
    return _ok(response)


Scopes = Iterable[str] | str | None


def _scopes(requested_scopes: Scopes) -> list[str]:
    """The requested scopes, de-duplicated in order (a string is space-separated). Empty when
    none were requested: the verification then only verifies and mints nothing (reference §3.1,
    ``requestedScopes`` is optional on every verify request)."""
    if isinstance(requested_scopes, str):
        requested_scopes = requested_scopes.split()
    return list(dict.fromkeys(requested_scopes or ()))


def _mint(core: ClientCore, data: Mapping[str, Any]) -> str:
    token = data.get("elevated_access_token")
    if not isinstance(token, str) or not token:
        raise ApiError("the server answered without an elevated access token")
    core.tokens.add(token)
    return token


def _busy(core: ClientCore, path: str, body: dict[str, Any]) -> Flow[dict[str, Any]]:
    """A call that shows in ``state``: ``is_loading`` while it runs, ``error`` after a refusal
    (cleared by a success), like the reference hook's state."""
    core.state.is_loading = True
    try:
        data = yield from call(core, "POST", path, json=body)
    except ClientError as exc:
        core.state.error = exc.detail
        raise
    finally:
        core.state.is_loading = False
    core.state.error = None
    return data


def _verify(
    core: ClientCore, path: str, body: dict[str, Any], scopes: list[str] | None
) -> Flow[str | None]:
    """A verify call. With ``scopes`` the server mints: the token is stored and returned. With
    none (``[]``) it only verifies and answers ``{"verified": true}``: None is returned and
    nothing is stored. ``scopes=None``: the call always mints (the external assertion carries
    its scopes)."""
    if scopes is not None:
        body = {**body, "requested_scopes": scopes}
    data = yield from _busy(core, path, body)
    if scopes is not None and not scopes:
        return None
    return _mint(core, data)


def _elevated(token: str | None) -> str:
    # A verification with scopes always mints (_mint raises otherwise); this only narrows.
    if token is None:
        raise ApiError("the step-up ended without an elevated access token")
    return token


def _elevate(core: ClientCore, scopes: Iterable[str]) -> Flow[str]:
    """Run under the challenge's lock: the token to attach for ``scopes``, a held one or one
    from :func:`prompt_step_up_auth`, *taken* before the lock is released. A single-use token
    thus leaves the store for this request only, and the next waiter prompts for its own
    (time-bound tokens stay and serve every waiter with that one prompt)."""
    wanted = list(scopes)
    key = " ".join(wanted)
    held = core.tokens.take(key)
    if held is not None:
        return held
    token = _elevated((yield from prompt_step_up_auth(core, wanted)))
    taken = core.tokens.take(key)
    # None only when the store dropped the new token as (nearly) expired: the server decides.
    return taken if taken is not None else token


# -- step-up check ---------------------------------------------------------------------------------
def check_step_up_auth(core: ClientCore, scope: str) -> Flow[StepUpCheck]:
    """Local token first (no I/O); else the server's check; any failure means required."""
    if core.tokens.peek(scope) is not None:
        return _NOT_REQUIRED
    try:
        response = yield core.request("POST", "/step-up/check", json={"scope": scope})
        data = _ok(response)
        is_required = data["is_required"]
        if not isinstance(is_required, bool):
            return _REQUIRED
        raw = data.get("credentials") or []
        default = data.get("default_credential_id")
        return StepUpCheck(
            is_required=is_required,
            credentials=tuple(Credential.from_json(c) for c in raw if isinstance(c, dict)),
            default_credential_id=default if isinstance(default, str) else None,
        )
    except Exception:  # fail closed: a network or server error never skips the step-up
        return _REQUIRED


def is_step_up_required(core: ClientCore, scope: str) -> Flow[bool]:
    """``check_step_up_auth(scope).is_required``. The held-token answer is read here first, so
    the hot path (a valid token held) runs one generator, not two (bench_client: <= 2 us)."""
    if core.tokens.peek(scope) is not None:
        return False
    result = yield from check_step_up_auth(core, scope)
    return result.is_required


# -- individual verification methods ---------------------------------------------------------------
NO_CREDENTIALS = "No verified credentials found for the authenticated user"
NO_OTP_CREDENTIAL = "No sign-in enabled email or SMS credential found for step-up authentication"
OTP_FORMATS = ("email", "phone_number")


def _credential_not_found(credential_id: str) -> str:
    return f'Credential with id "{credential_id}" not found'


def _not_otp_capable(fmt: str) -> str:
    return (
        f'Credential format "{fmt}" does not support OTP verification. '
        "Use an email address or a phone number."
    )


def send_otp(core: ClientCore, credential_id: str | None = None) -> Flow[OtpVerification]:
    """Send a code to ``credential_id`` or the default email (then phone) and keep it pending.

    A refusal for want of a usable credential is explained with the reference SDK's exact
    messages (§5.1 "sendOtp behaviour"); telling them apart needs the user's credentials, so
    they are listed then, and only then (the sent path stays one call)."""
    body = {"credential_id": credential_id} if credential_id else {}
    try:
        data = yield from _busy(core, "/otp/send", body)
    except ApiError as exc:
        if exc.server_code not in (NoMethodsAvailable.code, "not_found"):
            raise
        message = yield from _why_no_otp(core, credential_id)
        if message is None:
            raise
        core.state.error = message
        raise type(exc)(
            message, server_code=exc.server_code, http_status=exc.http_status, body=exc.body
        ) from exc
    pending = OtpVerification.from_json(data)
    core.state.otp_verification = pending
    return pending


def _why_no_otp(core: ClientCore, credential_id: str | None) -> Flow[str | None]:
    """The reference's message for a send refused for want of a credential (None: another
    reason, e.g. an unverified address; the server's own message stands then)."""
    try:
        creds = yield from list_credentials(core)
    except ClientError:
        return None
    verified = [c for c in creds if c.verified]
    if credential_id:
        chosen = next((c for c in creds if c.id == credential_id), None)
        if chosen is None:
            return _credential_not_found(credential_id)
        if chosen.format not in OTP_FORMATS:
            return _not_otp_capable(chosen.format)
        return None
    if not verified:
        return NO_CREDENTIALS
    return NO_OTP_CREDENTIAL


def verify_otp(
    core: ClientCore, verification_token: str, requested_scopes: Scopes = None
) -> Flow[str | None]:
    pending = core.state.otp_verification
    if pending is None:
        core.state.error = OtpNotInitiated.description
        raise OtpNotInitiated()
    scopes = _scopes(requested_scopes)
    body = {"verification_id": pending.verification_id, "code": verification_token}
    try:
        token = yield from _verify(core, "/otp/verify", body, scopes)
    except (CodeExpired, CodeUsed):
        core.state.otp_verification = None  # this verification is over: send a new code
        raise
    core.state.otp_verification = None
    return token


def verify_totp_mfa(
    core: ClientCore, code: str, requested_scopes: Scopes = None, device_id: str | None = None
) -> Flow[str | None]:
    body: dict[str, Any] = {"code": code}
    if device_id:
        body["device_id"] = device_id
    return (yield from _verify(core, "/mfa/totp/verify", body, _scopes(requested_scopes)))


def verify_recovery_code(
    core: ClientCore, code: str, requested_scopes: Scopes = None
) -> Flow[str | None]:
    body = {"code": code}
    return (yield from _verify(core, "/mfa/recovery/verify", body, _scopes(requested_scopes)))


def _authenticator(core: ClientCore) -> Authenticator:
    if core.authenticator is None:
        raise NoMethodsAvailable("no passkey authenticator is configured (authenticator=)")
    return core.authenticator


def verify_passkey_mfa(core: ClientCore, requested_scopes: Scopes = None) -> Flow[str | None]:
    scopes = _scopes(requested_scopes)
    authenticator = _authenticator(core)
    begun = yield from call(core, "POST", "/passkeys/authenticate/options", json={})
    credential = yield Call(authenticator.get, (begun["options"],))
    body = {"challenge_id": begun["challenge_id"], "credential": dict(credential)}
    return (yield from _verify(core, "/passkeys/authenticate", body, scopes))


def _sign(core: ClientCore, signer: WalletSigner, chain: str, message: str) -> Flow[str]:
    # A prompter may show the exact message first (``confirm_signature(chain, address, message)``
    # answering False refuses); prompters without the hook sign as before.
    confirm = getattr(core.prompter, "confirm_signature", None)
    if callable(confirm):
        accepted = yield Call(confirm, (chain, signer.address, message))
        if not accepted:
            raise StepUpCancelled("Signature request declined")
    signature = yield Call(signer.sign_message, (message.encode(),))
    return encode_signature(chain, signature)


def verify_wallet(
    core: ClientCore, requested_scopes: Scopes = None, wallet_id: str | None = None
) -> Flow[str | None]:
    scopes = _scopes(requested_scopes)
    body = {"wallet_id": wallet_id} if wallet_id else {}
    challenge = yield from call(core, "POST", "/wallets/challenge", json=body)
    address = str(challenge.get("address", ""))
    signer = core.signers.get(_address_key(address))
    if signer is None:
        raise NoMethodsAvailable(
            f"no signer for wallet {address}: add it with client.wallets.add_signer()"
        )
    signature = yield from _sign(
        core, signer, str(challenge.get("chain", signer.chain)), challenge["message"]
    )
    verify = {"challenge_id": challenge["challenge_id"], "signature": signature}
    return (yield from _verify(core, "/wallets/verify", verify, scopes))


def request_external_auth_elevated_token(core: ClientCore, external_jwt: str) -> Flow[str]:
    return _elevated(
        (yield from _verify(core, "/external-auth/verify", {"jwt": external_jwt}, None))
    )


# -- prompts ---------------------------------------------------------------------------------------
def _options(core: ClientCore, scopes: list[str]) -> Flow[tuple[list[Credential], str | None]]:
    """Credentials that can step up for every scope (the server's check), and the default."""
    listed: list[Credential] | None = None
    default: str | None = None
    for scope in scopes:
        data = yield from call(core, "POST", "/step-up/check", json={"scope": scope})
        found = [
            Credential.from_json(c) for c in data.get("credentials") or [] if isinstance(c, dict)
        ]
        if not data.get("is_required") or not found:
            continue
        ids = {c.id for c in found}
        listed = found if listed is None else [c for c in listed if c.id in ids]
        default = default or data.get("default_credential_id")
    if listed is None:  # nothing requires step-up now: offer what the user has
        data = yield from call(core, "GET", "/credentials")
        creds = [
            Credential.from_json(c) for c in data.get("credentials") or [] if isinstance(c, dict)
        ]
        creds = [c for c in creds if c.verified]
        mfa = [c for c in creds if c.is_mfa]
        listed = mfa or [c for c in creds if c.format in ("email", "phone_number", "blockchain")]
        default = next((c.id for c in listed if c.default), None)
    return listed, default if any(c.id == default for c in listed) else None


def _require_prompter(core: ClientCore) -> None:
    if core.prompter is None:
        raise PrompterMissing()


def _delegated(core: ClientCore, kind: str, scopes: list[str]) -> Flow[str | None] | None:
    """A prompter that runs the whole step-up itself (``step_up_flow``: the browser hand-off)."""
    run = getattr(core.prompter, "step_up_flow", None)
    return run(core, kind, scopes) if callable(run) else None


def _in_browser(core: ClientCore, kind: str, scopes: list[str]) -> Flow[str] | None:
    """The prompter's browser hand-off (its ``handoff``), for :data:`CONTINUE_IN_BROWSER`."""
    run = getattr(getattr(core.prompter, "handoff", None), "step_up_flow", None)
    return run(core, kind, scopes) if callable(run) else None


def _choose(
    core: ClientCore,
    kind: str,
    scopes: list[str],
    options: list[Credential],
    default: str | None,
    closed: str,
) -> Flow[Credential | str]:
    """The chosen credential, or the elevated token when the user went on in the browser."""
    if len(options) == 1:
        return options[0]
    error = None
    for _ in range(CODE_ATTEMPTS):
        answer = yield PromptNeeded(
            PromptKind.CHOOSE_METHOD,
            tuple(scopes),
            options=tuple(options),
            default=default or options[0].id,
            error=error,
        )
        if answer is None:
            raise StepUpCancelled(closed)
        browser = _in_browser(core, kind, scopes) if answer == CONTINUE_IN_BROWSER else None
        if browser is not None:
            return (yield from browser)
        chosen = next((c for c in options if c.id == answer), None)
        if chosen is not None:
            return chosen
        error = "Choose one of the offered methods."
    raise StepUpCancelled(closed)


def _code_loop(
    kind: PromptKind,
    scopes: list[str],
    verify: Callable[[str], Flow[T]],
    closed: str,
    sent: OtpVerification | None = None,
    resend: Callable[[], Flow[OtpVerification]] | None = None,
) -> Flow[T]:
    """Ask for a code and verify it; a wrong code asks again (at most :data:`CODE_ATTEMPTS`).

    With ``resend``, the answer :data:`RESEND_CODE` sends a new code and asks again (not an
    attempt; the server's send throttle decides how often)."""
    error: str | None = None
    remaining: int | None = None
    last: InvalidCode | None = None
    attempt = 0
    while attempt < CODE_ATTEMPTS:
        answer = yield PromptNeeded(
            kind,
            tuple(scopes),
            destination=sent.destination if sent else None,
            error=error,
            attempts_remaining=remaining,
            expires_at=sent.expires_at if sent else None,
            resend_after=sent.resend_after if sent and resend else None,
        )
        if answer is None:
            raise StepUpCancelled(closed)
        if answer == RESEND_CODE:
            if resend is None:
                raise StepUpCancelled(closed)
            try:
                sent, error, remaining = (yield from resend()), None, None
            except RateLimited as exc:  # the send throttle: the code already sent still works
                error = exc.detail
            continue
        attempt += 1
        try:
            return (yield from verify(answer.strip()))
        except InvalidCode as exc:
            last, error, remaining = exc, exc.detail, exc.attempts_remaining
            if remaining == 0:
                raise
    assert last is not None
    raise last


def _step_up_with(
    core: ClientCore, scopes: list[str], option: Credential, closed: str
) -> Flow[str | None]:
    if option.format in ("email", "phone_number"):
        sent = yield from send_otp(core, option.id)
        return (
            yield from _code_loop(
                PromptKind.OTP_CODE,
                scopes,
                lambda code: verify_otp(core, code, scopes),
                closed,
                sent=sent,
                resend=lambda: send_otp(core, option.id),
            )
        )
    if option.format == "blockchain":
        return (yield from verify_wallet(core, scopes, option.id))
    if option.format == "passkey":
        return (yield from verify_passkey_mfa(core, scopes))
    if option.format == "totp":
        return (
            yield from _code_loop(
                PromptKind.TOTP_CODE,
                scopes,
                lambda code: verify_totp_mfa(core, code, scopes, option.id),
                closed,
            )
        )
    if option.format == "recovery_code":
        return (
            yield from _code_loop(
                PromptKind.RECOVERY_CODE,
                scopes,
                lambda code: verify_recovery_code(core, code, scopes),
                closed,
            )
        )
    raise NoMethodsAvailable(f"credential format {option.format!r} cannot step up here")


def prompt_mfa(core: ClientCore, requested_scopes: Scopes = None) -> Flow[str | None]:
    """Step up with an MFA method (passkey, TOTP or recovery code), asking the prompter."""
    scopes = _scopes(requested_scopes)
    _require_prompter(core)
    delegated = _delegated(core, "mfa", scopes)
    if delegated is not None:
        return (yield from delegated)
    options, default = yield from _options(core, scopes)
    return (yield from _prompt_mfa(core, scopes, [c for c in options if c.is_mfa], default))


def _prompt_with(
    core: ClientCore,
    kind: str,
    scopes: list[str],
    options: list[Credential],
    default: str | None,
    closed: str,
    none_available: str,
) -> Flow[str | None]:
    """Choose one of ``options`` (or the browser) and step up with it."""
    if not options:
        raise NoMethodsAvailable(none_available)
    chosen = yield from _choose(core, kind, scopes, options, default, closed)
    if not isinstance(chosen, Credential):  # done in the browser: the token
        return chosen
    return (yield from _step_up_with(core, scopes, chosen, closed))


def _prompt_mfa(
    core: ClientCore, scopes: list[str], options: list[Credential], default: str | None
) -> Flow[str | None]:
    return (
        yield from _prompt_with(
            core, "mfa", scopes, options, default, _MFA_CLOSED,
            "No MFA method available: enrol one with client.mfa first.",
        )
    )  # fmt: skip


def prompt_reauthenticate(core: ClientCore, requested_scopes: Scopes = None) -> Flow[str | None]:
    """Step up by re-authenticating (email or SMS code, wallet signature)."""
    scopes = _scopes(requested_scopes)
    _require_prompter(core)
    delegated = _delegated(core, "reauthenticate", scopes)
    if delegated is not None:
        return (yield from delegated)
    options, default = yield from _options(core, scopes)
    return (yield from _prompt_reauth(core, scopes, [c for c in options if not c.is_mfa], default))


def _prompt_reauth(
    core: ClientCore, scopes: list[str], options: list[Credential], default: str | None
) -> Flow[str | None]:
    return (
        yield from _prompt_with(
            core, "reauthenticate", scopes, options, default, _REAUTH_CLOSED,
            "No reauthentication methods available. Add email, SMS or a wallet to your account.",
        )
    )  # fmt: skip


def prompt_step_up_auth(core: ClientCore, requested_scopes: Scopes = None) -> Flow[str | None]:
    """MFA users step up with MFA, everyone else re-authenticates (reference §1.2)."""
    scopes = _scopes(requested_scopes)
    _require_prompter(core)
    delegated = _delegated(core, "step_up", scopes)
    if delegated is not None:
        return (yield from delegated)
    options, default = yield from _options(core, scopes)
    mfa = [c for c in options if c.is_mfa]
    if mfa:
        return (yield from _prompt_mfa(core, scopes, mfa, default))
    return (yield from _prompt_reauth(core, scopes, options, default))


# -- session and sign-in ---------------------------------------------------------------------------
def get_session(core: ClientCore) -> Flow[Session]:
    data = yield from call(core, "GET", "/session")
    return _session(data, None)


def _session(data: Mapping[str, Any], token: str | None) -> Session:
    expires = data.get("expires_at")
    return Session(
        session_id=str(data.get("session_id", "")),
        user_id=str(data.get("user_id", "")),
        expires_at=float(expires) if isinstance(expires, int | float) else None,
        environment_id=data.get("environment_id")
        if isinstance(data.get("environment_id"), str)
        else None,
        session_token=token,
    )


def sign_out(core: ClientCore) -> Flow[None]:
    """Revoke the session on the server; the local session, tokens and state go in any case."""
    try:
        if core.session_token:
            yield from call(core, "DELETE", "/session")
    finally:
        core.tokens.clear()
        core.set_session(None)


def send_sign_in_code(core: ClientCore, email: str) -> Flow[OtpVerification]:
    data = yield from call(
        core, "POST", "/sign-in/email/send", json={"email": email}, authorized=False
    )
    pending = OtpVerification.from_json(data)
    core.sign_in_pending = pending
    return pending


def sign_in_with_email_code(core: ClientCore, code: str) -> Flow[Session]:
    pending = core.sign_in_pending
    if pending is None:
        raise OtpNotInitiated("No sign-in code was sent. Call send_sign_in_code() first.")
    data = yield from call(
        core,
        "POST",
        "/sign-in/email/verify",
        json={"verification_id": pending.verification_id, "code": code},
        authorized=False,
    )
    token = data.get("session_token")
    if not isinstance(token, str) or not token:
        raise ApiError("the server answered without a session token")
    core.sign_in_pending = None
    core.set_session(token)
    return _session(data, token)


def sign_in_with_email(core: ClientCore, email: str) -> Flow[Session]:
    """Send a sign-in code to ``email`` and ask the prompter for it."""
    _require_prompter(core)
    sent = yield from send_sign_in_code(core, email)
    session: Session | None = None

    def verify(code: str) -> Flow[str]:
        nonlocal session
        session = yield from sign_in_with_email_code(core, code)
        return session.session_id

    yield from _code_loop(
        PromptKind.SIGN_IN_CODE,
        [],
        verify,
        "Sign-in closed",
        sent=sent,
        resend=lambda: send_sign_in_code(core, email),
    )
    assert session is not None
    return session


# -- credentials, MFA enrolment, wallets -----------------------------------------------------------
def list_credentials(core: ClientCore) -> Flow[list[Credential]]:
    data = yield from call(core, "GET", "/credentials")
    return [Credential.from_json(c) for c in data.get("credentials") or [] if isinstance(c, dict)]


def delete_credential(core: ClientCore, credential_id: str) -> Flow[None]:
    yield from call(core, "DELETE", f"/credentials/{credential_id}", scope=UNLINK)


def add_totp_device(core: ClientCore, alias: str | None = None) -> Flow[TotpDevice]:
    body = {"alias": alias} if alias else {}
    data = yield from call(core, "POST", "/mfa/totp/devices", json=body, scope=LINK)
    return TotpDevice(
        id=str(data["id"]),
        secret=str(data["secret"]),
        uri=str(data["uri"]),
        qr_svg=data.get("qr_svg") if isinstance(data.get("qr_svg"), str) else None,
        verified=data.get("verified") is True,
    )


def verify_totp_device(core: ClientCore, device_id: str, code: str) -> Flow[MfaDevice]:
    data = yield from call(
        core, "POST", f"/mfa/totp/devices/{device_id}/verify", json={"code": code}
    )
    return MfaDevice.from_json(data)


def list_devices(core: ClientCore) -> Flow[list[MfaDevice]]:
    data = yield from call(core, "GET", "/mfa/devices")
    return [MfaDevice.from_json(d) for d in data.get("devices") or [] if isinstance(d, dict)]


def delete_device(core: ClientCore, device_id: str) -> Flow[None]:
    yield from call(core, "DELETE", f"/mfa/devices/{device_id}", scope=UNLINK)


def set_default_device(core: ClientCore, device_id: str) -> Flow[MfaDevice]:
    data = yield from call(core, "PUT", f"/credentials/{device_id}/default")
    return MfaDevice.from_json(data)


def get_recovery_codes(core: ClientCore, generate_new: bool = False) -> Flow[RecoveryCodes]:
    data = yield from call(
        core, "POST", "/mfa/recovery-codes", json={"generate_new": generate_new}, scope=LINK
    )
    codes = data.get("codes") or []
    remaining = data.get("remaining")
    return RecoveryCodes(
        codes=tuple(str(c) for c in codes),
        remaining=remaining if isinstance(remaining, int) else len(codes),
    )


def register_passkey(core: ClientCore, alias: str | None = None) -> Flow[MfaDevice]:
    authenticator = _authenticator(core)
    body = {"alias": alias} if alias else {}
    begun = yield from call(core, "POST", "/passkeys/register/options", json=body, scope=LINK)
    credential = yield Call(authenticator.create, (begun["options"],))
    data = yield from call(
        core,
        "POST",
        "/passkeys/register",
        json={"challenge_id": begun["challenge_id"], "credential": dict(credential)},
    )
    return MfaDevice.from_json(data)


def link_wallet(core: ClientCore, signer: Any) -> Flow[Credential]:
    adapted = as_signer(signer)
    challenge = yield from call(
        core,
        "POST",
        "/wallets/link/challenge",
        json={"chain": adapted.chain, "address": adapted.address},
        scope=LINK,
    )
    signature = yield from _sign(core, adapted, adapted.chain, challenge["message"])
    data = yield from call(
        core,
        "POST",
        "/wallets/link",
        json={"challenge_id": challenge["challenge_id"], "signature": signature},
    )
    core.add_signer(adapted)
    return Credential.from_json(data)


def list_wallets(core: ClientCore) -> Flow[list[Credential]]:
    creds = yield from list_credentials(core)
    return [c for c in creds if c.format == "blockchain"]
