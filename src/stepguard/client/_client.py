"""``stepguard.AsyncClient`` and ``stepguard.Client``: the same API, async and sync.

Every method is one line: it builds the flow of :mod:`._flows` and hands it to the client's
driver (:mod:`._drivers`). The logic lives once, in the flows.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

import httpx

from stepguard.client import _flows as flows
from stepguard.client._adapters import Authenticator, Prompter, WalletSigner
from stepguard.client._drivers import AsyncDriver, StepUpHttpAuth, SyncDriver
from stepguard.client._errors import ClientError, StepUpCancelled
from stepguard.client._models import (
    Credential,
    MfaDevice,
    OtpVerification,
    RecoveryCodes,
    Session,
    StepUpCheck,
    StepUpState,
    TotpDevice,
)
from stepguard.client._store import TokenStore
from stepguard.core.clock import Clock

__all__ = ["AsyncClient", "Client"]

Scopes = flows.Scopes
DEFAULT_TIMEOUT = 10.0


class _AsyncModule:
    def __init__(self, core: flows.ClientCore, driver: AsyncDriver) -> None:
        self._core = core
        self._driver = driver


class _SyncModule:
    def __init__(self, core: flows.ClientCore, driver: SyncDriver) -> None:
        self._core = core
        self._driver = driver


class _Base:
    """What the two clients share: configuration, session and the token store."""

    _core: flows.ClientCore

    @staticmethod
    def _make_core(
        base_url: str,
        environment_id: str,
        *,
        session_token: str | None,
        prompter: Prompter | None,
        authenticator: Authenticator | None,
        token_store: TokenStore | None,
        token_file: str | os.PathLike[str] | None,
        clock: Clock | None,
    ) -> flows.ClientCore:
        store = token_store or TokenStore(clock=clock, path=token_file)
        return flows.ClientCore(
            base_url,
            environment_id,
            tokens=store,
            prompter=prompter,
            authenticator=authenticator,
            session_token=session_token,
        )

    @property
    def environment_id(self) -> str:
        return self._core.environment_id

    @property
    def session_token(self) -> str | None:
        return self._core.session_token

    @property
    def tokens(self) -> TokenStore:
        """The elevated-token store (one token per scope set)."""
        return self._core.tokens

    @property
    def prompter(self) -> Prompter | None:
        return self._core.prompter

    @prompter.setter
    def prompter(self, prompter: Prompter | None) -> None:
        self._core.prompter = prompter

    @property
    def authenticator(self) -> Authenticator | None:
        return self._core.authenticator

    @authenticator.setter
    def authenticator(self, authenticator: Authenticator | None) -> None:
        self._core.authenticator = authenticator

    def set_session(self, session_token: str | None) -> None:
        """Use a session created by the app's backend (admin API) or a sign-in.

        Elevated tokens and flow state of a previous session are forgotten.
        """
        self._core.set_session(session_token)


@contextlib.contextmanager
def _prompting(core: flows.ClientCore, driver: SyncDriver | AsyncDriver) -> Iterator[None]:
    """Around a ``prompt_*`` call: with no prompter configured and a terminal on stdin and
    stdout, the terminal prompter answers this call only, with the browser hand-off behind its
    "Continue in the browser" choice (and for passkeys, without an authenticator). A prompter
    with ``report_error`` is told why a prompt failed (a lockout's wait time, say) before the
    error propagates."""
    installed: Prompter | None = None
    handoff: Authenticator | None = None
    if core.prompter is None and _interactive():
        from stepguard.client._handoff import BrowserHandoff
        from stepguard.client.prompters import TerminalPrompter

        terminal = TerminalPrompter()
        terminal.handoff = BrowserHandoff.attach(core, driver, ui=terminal)
        core.prompter = installed = terminal
        if core.authenticator is None:
            core.authenticator = handoff = terminal.handoff
    try:
        yield
    except ClientError as exc:
        report = getattr(core.prompter, "report_error", None)
        if callable(report) and not isinstance(exc, StepUpCancelled):
            report(exc)
        raise
    finally:
        if installed is not None and core.prompter is installed:
            core.prompter = None
        if handoff is not None and core.authenticator is handoff:
            core.authenticator = None


def _interactive() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty() and sys.stdout.isatty()
    except (ValueError, AttributeError):  # closed or replaced streams
        return False


# ==================================================================================================
# async


class AsyncStepUpAuth(_AsyncModule):
    """``client.step_up_auth``: check, verify, proceed (reference product §5, §9).

    Every ``verify_*`` and ``prompt_*`` method takes ``requested_scopes`` (a list, or one
    space-separated string). With scopes, the server mints one elevated token for them; it is
    stored (``client.http`` attaches it by itself) and returned as a string. Without scopes
    (``None``, the default, or empty), as in the reference SDK where ``requestedScopes`` is
    optional, the factor is only verified (the server answers ``{"verified": true}``): nothing
    is minted or stored and the method returns ``None``. A refusal raises the
    :class:`~stepguard.VerificationError` subclass of the server's ``code`` (and sets
    ``state.error``); a closed prompt raises :class:`~stepguard.StepUpCancelled`.
    """

    @property
    def state(self) -> StepUpState:
        return self._core.state

    async def is_step_up_required(self, scope: str) -> bool:
        """True unless a held token covers ``scope`` or the server says no; True on any error."""
        return await self._driver.run(flows.is_step_up_required(self._core, scope))

    async def check_step_up_auth(self, scope: str) -> StepUpCheck:
        """``is_required``, the ``credentials`` that can step up and ``default_credential_id``."""
        return await self._driver.run(flows.check_step_up_auth(self._core, scope))

    async def prompt_step_up_auth(self, requested_scopes: Scopes = None) -> str | None:
        """Ask the prompter: users with a verified MFA method step up with MFA, others
        re-authenticate. Returns the token (None without scopes)."""
        with _prompting(self._core, self._driver):
            return await self._driver.run(flows.prompt_step_up_auth(self._core, requested_scopes))

    async def prompt_mfa(self, requested_scopes: Scopes = None) -> str | None:
        """Ask the prompter for a passkey, TOTP or recovery-code step-up (a user without MFA
        gets :class:`~stepguard.NoMethodsAvailable`: enrol with ``client.mfa``). Returns the
        token (None without scopes)."""
        with _prompting(self._core, self._driver):
            return await self._driver.run(flows.prompt_mfa(self._core, requested_scopes))

    async def prompt_reauthenticate(self, requested_scopes: Scopes = None) -> str | None:
        """Ask the prompter for an email/SMS code or a wallet signature (refused to a user with
        MFA). Returns the token (None without scopes)."""
        with _prompting(self._core, self._driver):
            return await self._driver.run(flows.prompt_reauthenticate(self._core, requested_scopes))

    async def send_otp(self, credential_id: str | None = None) -> OtpVerification:
        """Send a one-time code to ``credential_id`` (default: the first verified email, else
        phone) and keep it pending for :meth:`verify_otp`. Refusals carry the reference's
        messages ("No verified credentials found for the authenticated user",
        ``Credential with id "…" not found``, ...)."""
        return await self._driver.run(flows.send_otp(self._core, credential_id))

    async def verify_otp(
        self, verification_token: str, *, requested_scopes: Scopes = None
    ) -> str | None:
        """Verify the code sent by :meth:`send_otp` (before it:
        :class:`~stepguard.OtpNotInitiated`). Returns the stored token (None without scopes)."""
        return await self._driver.run(
            flows.verify_otp(self._core, verification_token, requested_scopes)
        )

    async def verify_wallet(
        self, wallet_id: str | None = None, *, requested_scopes: Scopes = None
    ) -> str | None:
        """Sign the server's challenge with the wallet's signer (external wallets only; default:
        the first linked one). Returns the token (None without scopes)."""
        return await self._driver.run(flows.verify_wallet(self._core, requested_scopes, wallet_id))

    async def verify_passkey_mfa(self, *, requested_scopes: Scopes = None) -> str | None:
        """Assert a passkey through the configured authenticator. Returns the token (None
        without scopes)."""
        return await self._driver.run(flows.verify_passkey_mfa(self._core, requested_scopes))

    async def verify_totp_mfa(
        self, code: str, device_id: str | None = None, *, requested_scopes: Scopes = None
    ) -> str | None:
        """Verify a TOTP code (``device_id`` picks one of several devices). Returns the token
        (None without scopes)."""
        return await self._driver.run(
            flows.verify_totp_mfa(self._core, code, requested_scopes, device_id)
        )

    async def verify_recovery_code(
        self, code: str, *, requested_scopes: Scopes = None
    ) -> str | None:
        """Spend one recovery code. Returns the token (None without scopes)."""
        return await self._driver.run(
            flows.verify_recovery_code(self._core, code, requested_scopes)
        )

    async def request_external_auth_elevated_token(self, external_jwt: str) -> str:
        """Exchange the app backend's signed assertion (its ``scope`` claim gives the scopes)."""
        return await self._driver.run(
            flows.request_external_auth_elevated_token(self._core, external_jwt)
        )

    async def reset_state(self) -> None:
        """Clear the flow state (pending code, error); the elevated tokens stay."""
        self._core.state = StepUpState()

    async def clear_elevated_tokens(self) -> None:
        """Forget every elevated token held."""
        self._core.tokens.clear()
        self._core.tokens.bind(self._core.session_token)

    def get_elevated_access_token(self, scope: str, *, consume: bool = True) -> str | None:
        """The held token for ``scope`` (a single-use one is handed out once unless
        ``consume=False``)."""
        return self._core.tokens.take(scope) if consume else self._core.tokens.peek(scope)


class AsyncMfa(_AsyncModule):
    """``client.mfa``: TOTP devices, recovery codes and passkeys."""

    async def add_totp_device(self, alias: str | None = None) -> TotpDevice:
        """A new, unverified TOTP device (needs ``credential:link`` once any credential is
        verified)."""
        return await self._driver.run(flows.add_totp_device(self._core, alias))

    async def verify_totp_device(self, device_id: str, code: str) -> MfaDevice:
        """Confirm a new device with its first code."""
        return await self._driver.run(flows.verify_totp_device(self._core, device_id, code))

    async def list_devices(self) -> list[MfaDevice]:
        return await self._driver.run(flows.list_devices(self._core))

    async def delete_device(self, device_id: str) -> None:
        """Remove an MFA device (needs ``credential:unlink``)."""
        await self._driver.run(flows.delete_device(self._core, device_id))

    async def set_default_device(self, device_id: str) -> MfaDevice:
        return await self._driver.run(flows.set_default_device(self._core, device_id))

    async def get_recovery_codes(self, generate_new: bool = False) -> RecoveryCodes:
        """Recovery codes: ``codes`` holds the 10 new ones only when generated now."""
        return await self._driver.run(flows.get_recovery_codes(self._core, generate_new))

    async def register_passkey(self, alias: str | None = None) -> MfaDevice:
        """Create a passkey through the configured authenticator and register it."""
        return await self._driver.run(flows.register_passkey(self._core, alias))


class AsyncWallets(_AsyncModule):
    """``client.wallets``: external wallets linked through a signer."""

    async def link(self, signer: WalletSigner | Any) -> Credential:
        """Link the signer's wallet (eth-account account, nacl SigningKey, or a WalletSigner)."""
        return await self._driver.run(flows.link_wallet(self._core, signer))

    def add_signer(self, signer: WalletSigner | Any) -> WalletSigner:
        """Use ``signer`` for an already linked wallet (verify_wallet needs it)."""
        return self._core.add_signer(signer)

    async def list_wallets(self) -> list[Credential]:
        return await self._driver.run(flows.list_wallets(self._core))

    async def unlink(self, wallet_id: str) -> None:
        """Remove a wallet (needs ``credential:unlink``)."""
        await self._driver.run(flows.delete_credential(self._core, wallet_id))


class AsyncClient(_Base):
    """The stepguard SDK for asyncio apps.

    ``base_url`` is the stepguard server; ``api_base_url`` the app's own API, which
    ``client.http`` talks to (attaching the session and the right elevated token). With a
    ``prompter``, step-up challenges are answered by prompting; without one they raise
    :class:`~stepguard.StepUpRequired`.
    """

    def __init__(
        self,
        base_url: str,
        environment_id: str,
        *,
        session_token: str | None = None,
        prompter: Prompter | None = None,
        authenticator: Authenticator | None = None,
        token_store: TokenStore | None = None,
        token_file: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        api_base_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        api_transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._core = self._make_core(
            base_url,
            environment_id,
            session_token=session_token,
            prompter=prompter,
            authenticator=authenticator,
            token_store=token_store,
            token_file=token_file,
            clock=clock,
        )
        self._sdk_http = httpx.AsyncClient(transport=transport, timeout=timeout)
        self._driver = AsyncDriver(self._core, self._sdk_http)
        self.step_up_auth = AsyncStepUpAuth(self._core, self._driver)
        self.mfa = AsyncMfa(self._core, self._driver)
        self.wallets = AsyncWallets(self._core, self._driver)
        #: An httpx client for the app's API: session + elevated token attached, challenges
        #: answered (prompt, then one retry).
        self.http = httpx.AsyncClient(
            base_url=api_base_url or base_url,
            transport=api_transport,
            timeout=timeout,
            auth=StepUpHttpAuth(self._core, async_driver=self._driver),
        )

    async def get_session(self) -> Session:
        """The current session as the server sees it."""
        return await self._driver.run(flows.get_session(self._core))

    async def sign_out(self) -> None:
        """Revoke the session; the session, elevated tokens and flow state are cleared."""
        await self._driver.run(flows.sign_out(self._core))

    async def send_sign_in_code(self, email: str) -> OtpVerification:
        """Email a sign-in code (the answer is the same whether or not the account exists)."""
        return await self._driver.run(flows.send_sign_in_code(self._core, email))

    async def sign_in_with_email_code(self, code: str) -> Session:
        """Finish the email sign-in; the new session is used from now on."""
        return await self._driver.run(flows.sign_in_with_email_code(self._core, code))

    async def sign_in_with_email(self, email: str) -> Session:
        """Send a sign-in code and ask the prompter for it."""
        with _prompting(self._core, self._driver):
            return await self._driver.run(flows.sign_in_with_email(self._core, email))

    async def list_credentials(self) -> list[Credential]:
        return await self._driver.run(flows.list_credentials(self._core))

    async def delete_credential(self, credential_id: str) -> None:
        """Remove a credential (needs ``credential:unlink``)."""
        await self._driver.run(flows.delete_credential(self._core, credential_id))

    async def aclose(self) -> None:
        await self.http.aclose()
        await self._sdk_http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# ==================================================================================================
# sync


class StepUpAuth(_SyncModule):
    """``client.step_up_auth``: check, verify, proceed (reference product §5, §9).

    Every ``verify_*`` and ``prompt_*`` method takes ``requested_scopes`` (a list, or one
    space-separated string). With scopes, the server mints one elevated token for them; it is
    stored (``client.http`` attaches it by itself) and returned as a string. Without scopes
    (``None``, the default, or empty), as in the reference SDK where ``requestedScopes`` is
    optional, the factor is only verified (the server answers ``{"verified": true}``): nothing
    is minted or stored and the method returns ``None``. A refusal raises the
    :class:`~stepguard.VerificationError` subclass of the server's ``code`` (and sets
    ``state.error``); a closed prompt raises :class:`~stepguard.StepUpCancelled`.
    """

    @property
    def state(self) -> StepUpState:
        return self._core.state

    def is_step_up_required(self, scope: str) -> bool:
        """True unless a held token covers ``scope`` or the server says no; True on any error."""
        return self._driver.run(flows.is_step_up_required(self._core, scope))

    def check_step_up_auth(self, scope: str) -> StepUpCheck:
        """``is_required``, the ``credentials`` that can step up and ``default_credential_id``."""
        return self._driver.run(flows.check_step_up_auth(self._core, scope))

    def prompt_step_up_auth(self, requested_scopes: Scopes = None) -> str | None:
        """Ask the prompter: users with a verified MFA method step up with MFA, others
        re-authenticate. Returns the token (None without scopes)."""
        with _prompting(self._core, self._driver):
            return self._driver.run(flows.prompt_step_up_auth(self._core, requested_scopes))

    def prompt_mfa(self, requested_scopes: Scopes = None) -> str | None:
        """Ask the prompter for a passkey, TOTP or recovery-code step-up (a user without MFA
        gets :class:`~stepguard.NoMethodsAvailable`: enrol with ``client.mfa``). Returns the
        token (None without scopes)."""
        with _prompting(self._core, self._driver):
            return self._driver.run(flows.prompt_mfa(self._core, requested_scopes))

    def prompt_reauthenticate(self, requested_scopes: Scopes = None) -> str | None:
        """Ask the prompter for an email/SMS code or a wallet signature (refused to a user with
        MFA). Returns the token (None without scopes)."""
        with _prompting(self._core, self._driver):
            return self._driver.run(flows.prompt_reauthenticate(self._core, requested_scopes))

    def send_otp(self, credential_id: str | None = None) -> OtpVerification:
        """Send a one-time code to ``credential_id`` (default: the first verified email, else
        phone) and keep it pending for :meth:`verify_otp`. Refusals carry the reference's
        messages ("No verified credentials found for the authenticated user",
        ``Credential with id "…" not found``, ...)."""
        return self._driver.run(flows.send_otp(self._core, credential_id))

    def verify_otp(self, verification_token: str, *, requested_scopes: Scopes = None) -> str | None:
        """Verify the code sent by :meth:`send_otp` (before it:
        :class:`~stepguard.OtpNotInitiated`). Returns the stored token (None without scopes)."""
        return self._driver.run(flows.verify_otp(self._core, verification_token, requested_scopes))

    def verify_wallet(
        self, wallet_id: str | None = None, *, requested_scopes: Scopes = None
    ) -> str | None:
        """Sign the server's challenge with the wallet's signer (external wallets only; default:
        the first linked one). Returns the token (None without scopes)."""
        return self._driver.run(flows.verify_wallet(self._core, requested_scopes, wallet_id))

    def verify_passkey_mfa(self, *, requested_scopes: Scopes = None) -> str | None:
        """Assert a passkey through the configured authenticator. Returns the token (None
        without scopes)."""
        return self._driver.run(flows.verify_passkey_mfa(self._core, requested_scopes))

    def verify_totp_mfa(
        self, code: str, device_id: str | None = None, *, requested_scopes: Scopes = None
    ) -> str | None:
        """Verify a TOTP code (``device_id`` picks one of several devices). Returns the token
        (None without scopes)."""
        return self._driver.run(
            flows.verify_totp_mfa(self._core, code, requested_scopes, device_id)
        )

    def verify_recovery_code(self, code: str, *, requested_scopes: Scopes = None) -> str | None:
        """Spend one recovery code. Returns the token (None without scopes)."""
        return self._driver.run(flows.verify_recovery_code(self._core, code, requested_scopes))

    def request_external_auth_elevated_token(self, external_jwt: str) -> str:
        """Exchange the app backend's signed assertion (its ``scope`` claim gives the scopes)."""
        return self._driver.run(
            flows.request_external_auth_elevated_token(self._core, external_jwt)
        )

    def reset_state(self) -> None:
        """Clear the flow state (pending code, error); the elevated tokens stay."""
        self._core.state = StepUpState()

    def clear_elevated_tokens(self) -> None:
        """Forget every elevated token held."""
        self._core.tokens.clear()
        self._core.tokens.bind(self._core.session_token)

    def get_elevated_access_token(self, scope: str, *, consume: bool = True) -> str | None:
        """The held token for ``scope`` (a single-use one is handed out once unless
        ``consume=False``)."""
        return self._core.tokens.take(scope) if consume else self._core.tokens.peek(scope)


class Mfa(_SyncModule):
    """``client.mfa``: TOTP devices, recovery codes and passkeys."""

    def add_totp_device(self, alias: str | None = None) -> TotpDevice:
        """A new, unverified TOTP device (needs ``credential:link`` once any credential is
        verified)."""
        return self._driver.run(flows.add_totp_device(self._core, alias))

    def verify_totp_device(self, device_id: str, code: str) -> MfaDevice:
        """Confirm a new device with its first code."""
        return self._driver.run(flows.verify_totp_device(self._core, device_id, code))

    def list_devices(self) -> list[MfaDevice]:
        return self._driver.run(flows.list_devices(self._core))

    def delete_device(self, device_id: str) -> None:
        """Remove an MFA device (needs ``credential:unlink``)."""
        self._driver.run(flows.delete_device(self._core, device_id))

    def set_default_device(self, device_id: str) -> MfaDevice:
        return self._driver.run(flows.set_default_device(self._core, device_id))

    def get_recovery_codes(self, generate_new: bool = False) -> RecoveryCodes:
        """Recovery codes: ``codes`` holds the 10 new ones only when generated now."""
        return self._driver.run(flows.get_recovery_codes(self._core, generate_new))

    def register_passkey(self, alias: str | None = None) -> MfaDevice:
        """Create a passkey through the configured authenticator and register it."""
        return self._driver.run(flows.register_passkey(self._core, alias))


class Wallets(_SyncModule):
    """``client.wallets``: external wallets linked through a signer."""

    def link(self, signer: WalletSigner | Any) -> Credential:
        """Link the signer's wallet (eth-account account, nacl SigningKey, or a WalletSigner)."""
        return self._driver.run(flows.link_wallet(self._core, signer))

    def add_signer(self, signer: WalletSigner | Any) -> WalletSigner:
        """Use ``signer`` for an already linked wallet (verify_wallet needs it)."""
        return self._core.add_signer(signer)

    def list_wallets(self) -> list[Credential]:
        return self._driver.run(flows.list_wallets(self._core))

    def unlink(self, wallet_id: str) -> None:
        """Remove a wallet (needs ``credential:unlink``)."""
        self._driver.run(flows.delete_credential(self._core, wallet_id))


class Client(_Base):
    """The stepguard SDK, synchronous (same API as :class:`AsyncClient`; thread-safe)."""

    def __init__(
        self,
        base_url: str,
        environment_id: str,
        *,
        session_token: str | None = None,
        prompter: Prompter | None = None,
        authenticator: Authenticator | None = None,
        token_store: TokenStore | None = None,
        token_file: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        api_base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        api_transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._core = self._make_core(
            base_url,
            environment_id,
            session_token=session_token,
            prompter=prompter,
            authenticator=authenticator,
            token_store=token_store,
            token_file=token_file,
            clock=clock,
        )
        self._sdk_http = httpx.Client(transport=transport, timeout=timeout)
        self._driver = SyncDriver(self._core, self._sdk_http)
        self.step_up_auth = StepUpAuth(self._core, self._driver)
        self.mfa = Mfa(self._core, self._driver)
        self.wallets = Wallets(self._core, self._driver)
        #: An httpx client for the app's API: session + elevated token attached, challenges
        #: answered (prompt, then one retry).
        self.http = httpx.Client(
            base_url=api_base_url or base_url,
            transport=api_transport,
            timeout=timeout,
            auth=StepUpHttpAuth(self._core, sync_driver=self._driver),
        )

    def get_session(self) -> Session:
        """The current session as the server sees it."""
        return self._driver.run(flows.get_session(self._core))

    def sign_out(self) -> None:
        """Revoke the session; the session, elevated tokens and flow state are cleared."""
        self._driver.run(flows.sign_out(self._core))

    def send_sign_in_code(self, email: str) -> OtpVerification:
        """Email a sign-in code (the answer is the same whether or not the account exists)."""
        return self._driver.run(flows.send_sign_in_code(self._core, email))

    def sign_in_with_email_code(self, code: str) -> Session:
        """Finish the email sign-in; the new session is used from now on."""
        return self._driver.run(flows.sign_in_with_email_code(self._core, code))

    def sign_in_with_email(self, email: str) -> Session:
        """Send a sign-in code and ask the prompter for it."""
        with _prompting(self._core, self._driver):
            return self._driver.run(flows.sign_in_with_email(self._core, email))

    def list_credentials(self) -> list[Credential]:
        return self._driver.run(flows.list_credentials(self._core))

    def delete_credential(self, credential_id: str) -> None:
        """Remove a credential (needs ``credential:unlink``)."""
        self._driver.run(flows.delete_credential(self._core, credential_id))

    def close(self) -> None:
        self.http.close()
        self._sdk_http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
