"""The software WebAuthn authenticator the tests use: the one the test kit ships
(:mod:`stepguard.testing`), so app developers and our own tests exercise the same code."""

from __future__ import annotations

from stepguard.testing._authenticator import SoftwareAuthenticator, b64url, b64url_decode

__all__ = ["SoftwareAuthenticator", "b64url", "b64url_decode"]
