"""A real stepguard server for an app's tests: uvicorn in a thread, SQLite in a temporary
directory, a controllable clock, and the codes it "sends" captured in memory.

``StepGuardTestServer`` is a context manager. Inside it, :meth:`StepGuardTestServer.create_user`
makes a user with a live session; :class:`TestUser` enrols factors through the SDK itself (TOTP
with a known secret, a software passkey, an Ethereum or Solana wallet, recovery codes) and hands
out clients and an :class:`AutoPrompter` that answers every prompt the way the user would.
"""

from __future__ import annotations

import re
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from stepguard.client import AsyncClient, Client, EthereumSigner, SolanaSigner, WalletSigner
from stepguard.client._models import Credential, PromptKind, PromptNeeded
from stepguard.core.clock import FixedClock
from stepguard.testing._authenticator import SoftwareAuthenticator

__all__ = ["AutoPrompter", "StepGuardTestServer", "TestUser"]

ADMIN_KEY = "sgadm_testkit_0123456789abcdef0123456789abcdef"  # noqa: S105 (a throwaway test key)
LOOPBACK = "127.0.0.1"
_CODE = re.compile(r"\b\d{6,8}\b")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class StepGuardTestServer:
    """The stepguard server on ``127.0.0.1`` in a background thread, for the ``with`` block.

    ``clock`` (default: a :class:`FixedClock`) is the server's clock; give the same one to the
    clients (the helpers here do) and move it with ``advance`` to expire codes and tokens.
    ``policy`` changes the default environment's policy (``PATCH`` body of the admin API);
    ``demo=True`` mounts the demo wallet app (guarded routes) at ``/demo``. Other keywords are
    server :class:`~stepguard.server.settings.Settings` fields.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        clock: FixedClock | None = None,
        policy: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        self.clock = clock or FixedClock()
        self.port = _free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="stepguard-test-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        self._settings = settings
        self._policy = policy
        self.environment_id = ""
        self.app: Any = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._admin = httpx.Client(base_url=self.url, headers={"X-StepGuard-Admin-Key": ADMIN_KEY})

    @property
    def rp_id(self) -> str:
        """The WebAuthn relying-party id (the host of the public URL)."""
        return urlsplit(self.url).hostname or LOOPBACK

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        import uvicorn

        from stepguard.server.app import create_app
        from stepguard.server.settings import Settings

        values: dict[str, Any] = {
            "database_url": f"sqlite+aiosqlite:///{self.data_dir / 'stepguard.db'}",
            "data_dir": str(self.data_dir),
            "admin_key": ADMIN_KEY,
            "public_url": self.url,
        }
        values.update(self._settings)
        self.app = create_app(Settings(**values), clock=self.clock)
        if values.get("demo"):
            from stepguard.demo import mount_demo

            mount_demo(self.app)  # the demo wallet app at /demo, behind the guard
        config = uvicorn.Config(
            self.app, host=LOOPBACK, port=self.port, log_level="warning", ws="none"
        )
        self._server = uvicorn.Server(config)
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                self._server.run()
            except BaseException as exc:  # reported below, not lost in the thread
                failure.append(exc)

        self._thread = threading.Thread(target=serve, name=f"stepguard-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if failure or not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the stepguard test server did not start: {failure[:1]!r}")
            time.sleep(0.005)
        envs = self._admin_call("GET", "/admin/environments")["environments"]
        self.environment_id = next(e["id"] for e in envs if e["is_default"])
        if self._policy:
            self.set_policy(self._policy)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._admin.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- admin --------------------------------------------------------------------------------
    def _admin_call(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        response = self._admin.request(method, path, json=json)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def set_policy(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change the default environment's policy (e.g. ``{"mfa_enabled": False}``)."""
        return self._admin_call(
            "PATCH", f"/admin/environments/{self.environment_id}/policy", changes
        )

    def create_session(self, user_id: str) -> str:
        """A new session token for ``user_id``."""
        data = self._admin_call(
            "POST", f"/admin/environments/{self.environment_id}/sessions", {"user_id": user_id}
        )
        return str(data["session_token"])

    def create_user(self, email: str | None = None, phone: str | None = None) -> TestUser:
        """A user with a verified email (default: a unique ``@example.com`` one) and a session."""
        if email is None and phone is None:
            email = f"user{_free_port()}-{time.monotonic_ns()}@example.com"
        body = {k: v for k, v in (("email", email), ("phone", phone)) if v}
        user = self._admin_call("POST", f"/admin/environments/{self.environment_id}/users", body)
        return TestUser(self, str(user["id"]), self.create_session(str(user["id"])), email, phone)

    # -- captured messages --------------------------------------------------------------------
    def messages(self) -> list[Any]:
        """Every message the server "sent" (email and SMS), oldest first."""
        from stepguard.server.delivery import delivery_for

        return list(delivery_for(self.app.state.service).outbox.messages())

    def last_code(self, to: str, *, timeout: float = 2.0) -> str:
        """The code in the last message to ``to`` (an email address or phone number), waiting up
        to ``timeout`` seconds for one (some routes deliver after answering)."""
        deadline = time.monotonic() + timeout
        while True:
            for message in reversed(self.messages()):
                if message.to == to:
                    found = _CODE.search(message.body)
                    if found:
                        return found.group(0)
            if time.monotonic() > deadline:
                raise LookupError(f"no code was sent to {to}")
            time.sleep(0.01)

    # -- clients ------------------------------------------------------------------------------
    def client(self, user: TestUser | None = None, **options: Any) -> Client:
        """A sync :class:`Client` for this server (signed in as ``user`` when given)."""
        options.setdefault("clock", self.clock)
        if user is not None:
            options.setdefault("session_token", user.session_token)
            options.setdefault("prompter", user.prompter())
            options.setdefault("authenticator", user.authenticator)
        client = Client(self.url, self.environment_id, **options)
        if user is not None:
            for signer in user.signers:
                client.wallets.add_signer(signer)
        return client

    def async_client(self, user: TestUser | None = None, **options: Any) -> AsyncClient:
        """An :class:`AsyncClient` for this server (signed in as ``user`` when given)."""
        options.setdefault("clock", self.clock)
        if user is not None:
            options.setdefault("session_token", user.session_token)
            options.setdefault("prompter", user.prompter())
            options.setdefault("authenticator", user.authenticator)
        client = AsyncClient(self.url, self.environment_id, **options)
        if user is not None:
            for signer in user.signers:
                client.wallets.add_signer(signer)
        return client


@dataclass(eq=False)
class TestUser:
    """A user of a :class:`StepGuardTestServer` and the factors enrolled for them."""

    __test__ = False

    server: StepGuardTestServer
    id: str
    session_token: str
    email: str | None = None
    phone: str | None = None
    authenticator: SoftwareAuthenticator = field(init=False)
    totp_secret: str | None = None
    totp_device_id: str | None = None
    recovery_codes: list[str] = field(default_factory=list)
    signers: list[WalletSigner] = field(default_factory=list)
    _last_totp_step: int = -1

    def __post_init__(self) -> None:
        self.authenticator = SoftwareAuthenticator(self.server.rp_id, self.server.url)

    def prompter(self, prefer: str | None = None) -> AutoPrompter:
        """A prompter that answers like this user (``prefer``: a credential format to choose)."""
        return AutoPrompter(self, prefer=prefer)

    def totp_code(self) -> str:
        """The current TOTP code; moves the clock to the next 30 s step if this one was used
        (the server refuses a step twice)."""
        import pyotp

        if self.totp_secret is None:
            raise LookupError("this user has no TOTP device: call add_totp() first")
        step = int(self.server.clock.now() // 30)
        if step <= self._last_totp_step:
            self.server.clock.advance(30 * (self._last_totp_step - step + 1))
            step = self._last_totp_step + 1
        self._last_totp_step = step
        return str(pyotp.TOTP(self.totp_secret).at(self.server.clock.now()))

    # -- enrolment (through the SDK, stepping up with the user's factors when needed) ----------
    def _client(self) -> Client:
        return self.server.client(self)

    def add_totp(self) -> str:
        """Enrol and verify a TOTP device; returns its id (the secret is ``totp_secret``)."""
        with self._client() as client:
            device = client.mfa.add_totp_device()
            self.totp_secret = device.secret
            client.mfa.verify_totp_device(device.id, self.totp_code())
        self.totp_device_id = device.id
        return device.id

    def add_passkey(self) -> str:
        """Register a passkey held by ``authenticator``; returns its id."""
        with self._client() as client:
            return client.mfa.register_passkey().id

    def add_recovery_codes(self) -> list[str]:
        """Generate the 10 recovery codes (kept in ``recovery_codes``)."""
        with self._client() as client:
            codes = client.mfa.get_recovery_codes(generate_new=True)
        self.recovery_codes = list(codes.codes)
        return self.recovery_codes

    def link_wallet(self, chain: str = "ethereum") -> Credential:
        """Link a new Ethereum (eth-account) or Solana (PyNaCl) wallet; its signer is kept."""
        signer: WalletSigner
        if chain == "ethereum":
            from eth_account import Account

            signer = EthereumSigner(Account.create())
        else:
            import nacl.signing

            signer = SolanaSigner(nacl.signing.SigningKey.generate())
        with self._client() as client:
            wallet = client.wallets.link(signer)
        self.signers.append(signer)
        return wallet


class AutoPrompter:
    """Answers prompts as the user would: email/SMS codes from the server's captured messages,
    TOTP codes from the enrolled secret, recovery codes from the generated list. Method choices
    go to ``prefer`` (a credential format) when offered, else to the default. ``prompts`` records
    every prompt."""

    def __init__(self, user: TestUser, *, prefer: str | None = None) -> None:
        self.user = user
        self.prefer = prefer
        self.prompts: list[PromptNeeded] = []
        self._lock = threading.Lock()

    def prompt(self, request: PromptNeeded) -> str | None:
        with self._lock:
            self.prompts.append(request)
            return self._answer(request)

    def _answer(self, request: PromptNeeded) -> str | None:
        user = self.user
        if request.kind is PromptKind.CHOOSE_METHOD:
            preferred = [o for o in request.options if o.format == self.prefer]
            return preferred[0].id if preferred else request.default
        if request.kind in (PromptKind.OTP_CODE, PromptKind.SIGN_IN_CODE):
            to = user.email if user.email else user.phone
            return self.user.server.last_code(to or "")
        if request.kind is PromptKind.TOTP_CODE:
            return user.totp_code()
        if request.kind is PromptKind.RECOVERY_CODE:
            return user.recovery_codes.pop(0) if user.recovery_codes else None
        return None

    def count(self, kind: PromptKind | None = None) -> int:
        return sum(1 for p in self.prompts if kind is None or p.kind is kind)
