"""Extension points: prompters, passkey authenticators and wallet signers.

Each is a small protocol the app implements (or picks an implementation of). Methods may be plain
or ``async``: the async client awaits an awaitable answer; the sync client needs plain ones.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import base58

from stepguard.client._models import PromptKind, PromptNeeded

__all__ = [
    "Authenticator",
    "EthereumSigner",
    "Prompter",
    "ScriptedPrompter",
    "SolanaSigner",
    "WalletSigner",
    "as_signer",
    "encode_signature",
]

PromptAnswer = str | None


@runtime_checkable
class Prompter(Protocol):
    """Asks the user something. Answer a string, or ``None`` when the user closes the prompt
    (the SDK then raises :class:`~stepguard.StepUpCancelled`)."""

    def prompt(self, request: PromptNeeded) -> PromptAnswer | Awaitable[PromptAnswer]: ...


Answer = str | None | Callable[[PromptNeeded], str | None]


class ScriptedPrompter:
    """A prompter that answers from a script, for tests and the test kit.

    ``answers`` are used in order; each is a string, ``None`` (cancel) or a callable taking the
    :class:`PromptNeeded` (e.g. to read the code just sent). Method choices are answered with the
    default option unless ``auto_choose`` is off. Every prompt is recorded in ``prompts``; an
    exhausted script cancels. ``delay`` (seconds) keeps the prompt open, to test concurrency.
    """

    def __init__(
        self, answers: Iterable[Answer] = (), *, auto_choose: bool = True, delay: float = 0.0
    ) -> None:
        self.answers: list[Answer] = list(answers)
        self.auto_choose = auto_choose
        self.delay = delay
        self.prompts: list[PromptNeeded] = []
        self._lock = threading.Lock()

    def prompt(self, request: PromptNeeded) -> str | None:
        with self._lock:
            self.prompts.append(request)
            if request.kind is PromptKind.CHOOSE_METHOD and self.auto_choose:
                return request.default or (request.options[0].id if request.options else None)
            answer = self.answers.pop(0) if self.answers else None
        if self.delay:
            threading.Event().wait(self.delay)
        return answer(request) if callable(answer) else answer

    def count(self, kind: PromptKind | None = None) -> int:
        """How many prompts (of ``kind``) were shown."""
        return sum(1 for p in self.prompts if kind is None or p.kind is kind)


@runtime_checkable
class Authenticator(Protocol):
    """A WebAuthn authenticator plus client: ``navigator.credentials.create()``/``get()``.

    ``options`` is the server's creation or request options JSON; the answer is the shape of
    ``PublicKeyCredential.toJSON()``. The browser hand-off ships with the UI; a software
    authenticator is in :mod:`stepguard.testing`.
    """

    def create(
        self, options: dict[str, Any]
    ) -> Mapping[str, Any] | Awaitable[Mapping[str, Any]]: ...

    def get(self, options: dict[str, Any]) -> Mapping[str, Any] | Awaitable[Mapping[str, Any]]: ...


@runtime_checkable
class WalletSigner(Protocol):
    """An external wallet: its ``address``, its ``chain`` (``ethereum`` or ``solana``) and a
    ``sign_message(bytes)`` that signs the exact message bytes (EIP-191 personal_sign for
    Ethereum, raw Ed25519 for Solana)."""

    @property
    def address(self) -> str: ...

    @property
    def chain(self) -> str: ...

    def sign_message(self, message: bytes) -> bytes | Awaitable[bytes]: ...


class EthereumSigner:
    """An eth-account ``LocalAccount`` as a :class:`WalletSigner` (EIP-191 ``personal_sign``)."""

    chain = "ethereum"

    def __init__(self, account: Any) -> None:
        self._account = account
        self.address: str = str(account.address)

    def sign_message(self, message: bytes) -> bytes:
        from eth_account.messages import encode_defunct

        signed = self._account.sign_message(encode_defunct(primitive=message))
        return bytes(signed.signature)


class SolanaSigner:
    """A Solana keypair (PyNaCl ``SigningKey``, or its 32-byte seed / 64-byte secret key) as a
    :class:`WalletSigner` (Ed25519 over the message bytes; the address is the base58 public key)."""

    chain = "solana"

    def __init__(self, keypair: Any) -> None:
        import nacl.signing

        if isinstance(keypair, bytes | bytearray):
            keypair = nacl.signing.SigningKey(bytes(keypair[:32]))
        if not isinstance(keypair, nacl.signing.SigningKey):
            raise TypeError("a Solana signer needs a nacl.signing.SigningKey or its seed bytes")
        self._key = keypair
        self.address: str = base58.b58encode(bytes(keypair.verify_key)).decode()

    def sign_message(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)


def as_signer(obj: Any) -> WalletSigner:
    """``obj`` as a :class:`WalletSigner`: itself when it has ``address``, ``chain`` and
    ``sign_message``; an adapter for an eth-account account or a PyNaCl signing key."""
    if all(hasattr(obj, name) for name in ("address", "chain", "sign_message")):
        return obj  # type: ignore[no-any-return]
    try:
        import nacl.signing

        if isinstance(obj, nacl.signing.SigningKey):
            return SolanaSigner(obj)
    except ImportError:  # pragma: no cover - PyNaCl is a dependency
        pass
    if hasattr(obj, "address") and hasattr(obj, "sign_message") and hasattr(obj, "key"):
        return EthereumSigner(obj)
    raise TypeError(
        "not a wallet signer: give an eth-account account, a nacl SigningKey, or an object "
        "with .address, .chain and .sign_message(bytes)"
    )


def encode_signature(chain: str, signature: bytes | str) -> str:
    """The wire form of a wallet signature: 0x-hex for Ethereum, base58 for Solana."""
    if isinstance(signature, str):
        return signature
    if chain == "solana":
        return base58.b58encode(signature).decode()
    return "0x" + signature.hex()
