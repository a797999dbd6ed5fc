"""The client's elevated-token store (reference product §3.3-§3.5).

A token is read, not verified: the client only needs ``scope``, ``exp`` and ``single_use`` from its
payload (:func:`stepguard.core.tokens.unverified_claims`); the guard and the server are the
authorities on signature, subject and replay. Rules:

* a token without scopes, without ``exp`` or already expired is dropped when it arrives;
* one token per normalised scope set: a new one for the same set replaces the old one;
* an expired token is never handed out (with a small skew margin, performance.md G7);
* a single-use token is handed out once (:meth:`TokenStore.take` removes it), so two concurrent
  requests never carry the same one;
* :meth:`TokenStore.clear` empties it (sign-out); a file, when given, is written with mode 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from stepguard.core.clock import Clock, SystemClock
from stepguard.core.errors import ElevatedTokenInvalid
from stepguard.core.tokens import unverified_claims

__all__ = ["DEFAULT_SKEW", "StoredToken", "TokenStore"]

#: A token this close to ``exp`` is treated as expired: it would likely die on the way.
DEFAULT_SKEW = 5.0


@dataclass(frozen=True, slots=True)
class StoredToken:
    """An elevated token and what the client read from its payload."""

    token: str
    scopes: frozenset[str]
    expires_at: float
    single_use: bool

    @property
    def scope_key(self) -> tuple[str, ...]:
        return tuple(sorted(self.scopes))


def parse_token(token: str) -> StoredToken | None:
    """The stored form of ``token``, or None when it has no scope or no ``exp`` (then unusable)."""
    try:
        claims = unverified_claims(token)
    except ElevatedTokenInvalid:
        return None
    scope = claims.get("scope")
    exp = claims.get("exp")
    if not isinstance(scope, str) or isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    scopes = frozenset(scope.split())
    if not scopes:
        return None
    return StoredToken(token, scopes, float(exp), claims.get("single_use") is True)


class TokenStore:
    """Elevated tokens by scope set. Thread-safe; optionally persisted to ``path`` (mode 0600)."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        path: str | os.PathLike[str] | None = None,
        skew: float = DEFAULT_SKEW,
    ) -> None:
        self._clock = clock or SystemClock()
        self._skew = float(skew)
        self._path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, ...], StoredToken] = {}
        #: scope -> the tokens granting it, rebuilt under the lock on every change and read
        #: without it (one atomic reference read), so the hot check takes no lock.
        self._index: dict[str, tuple[StoredToken, ...]] = {}
        self._session: str | None = None
        self._loaded_for: str | None = None
        if self._path is not None:
            self._load(self._path)

    def __len__(self) -> int:
        """How many live tokens are held (expired ones are dropped first)."""
        return len(self.tokens())

    def tokens(self) -> list[StoredToken]:
        """The live tokens (expired ones are dropped first)."""
        with self._lock:
            self._prune(self._clock.now())
            return list(self._entries.values())

    def add(self, token: str) -> StoredToken | None:
        """Keep ``token`` (replacing the one for the same scope set); None if it was dropped."""
        stored = parse_token(token)
        if stored is None or stored.expires_at <= self._clock.now() + self._skew:
            return None
        with self._lock:
            self._entries[stored.scope_key] = stored
            self._save()
        return stored

    def _reindex(self) -> None:
        index: dict[str, list[StoredToken]] = {}
        for entry in self._entries.values():
            for scope in entry.scopes:
                index.setdefault(scope, []).append(entry)
        self._index = {scope: tuple(entries) for scope, entries in index.items()}

    def _find(self, scope: str, now: float) -> StoredToken | None:
        limit = now + self._skew
        if " " in scope:
            wanted = frozenset(scope.split())
            for entry in self._index.get(min(wanted, default=""), ()):
                if entry.expires_at > limit and wanted <= entry.scopes:
                    return entry
            return None
        for entry in self._index.get(scope, ()):
            if entry.expires_at > limit:
                return entry
        return None

    def peek(self, scope: str) -> str | None:
        """A live token covering ``scope`` (space-separated scopes: all of them), without using it."""
        entry = self._find(scope, self._clock.now())
        return entry.token if entry is not None else None

    def take(self, scope: str) -> str | None:
        """Like :meth:`peek`, but a single-use token is removed: it is handed out once."""
        now = self._clock.now()
        with self._lock:
            entry = self._find(scope, now)
            if entry is None:
                return None
            if entry.single_use:
                del self._entries[entry.scope_key]
                self._save()
            return entry.token

    def discard(self, token: str) -> None:
        """Forget ``token`` (the server or a guard refused it)."""
        with self._lock:
            for key, entry in list(self._entries.items()):
                if entry.token == token:
                    del self._entries[key]
                    self._save()

    def clear(self) -> None:
        """Forget every token (sign-out, or another session)."""
        with self._lock:
            self._entries.clear()
            self._session = None
            self._reindex()
            if self._path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._path.unlink()

    def bind(self, session_token: str | None) -> None:
        """Tie the tokens to a session: switching to another session forgets them.

        Only a SHA-256 fingerprint of the session token is kept (and written to the file), so a
        restored file serves the session it was written for and no other.
        """
        fingerprint = hashlib.sha256(session_token.encode()).hexdigest() if session_token else None
        with self._lock:
            if fingerprint == self._session:
                return
            if self._session is not None or fingerprint is None:
                self._entries.clear()
            elif self._entries and self._loaded_for != fingerprint:
                self._entries.clear()
            self._session = fingerprint
            self._save()

    # -- persistence --------------------------------------------------------------------------
    def _prune(self, now: float) -> None:
        dead = [k for k, e in self._entries.items() if e.expires_at <= now + self._skew]
        for key in dead:
            del self._entries[key]
        if dead:
            self._save()

    def _load(self, path: Path) -> None:
        try:
            info = path.stat()
        except FileNotFoundError:
            return
        # A token file others could read may have leaked: its tokens are not used.
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        raw = data.get("tokens") if isinstance(data, dict) else None
        session = data.get("session") if isinstance(data, dict) else None
        self._loaded_for = session if isinstance(session, str) else None
        now = self._clock.now()
        for token in raw if isinstance(raw, list) else []:
            stored = parse_token(token) if isinstance(token, str) else None
            if stored is not None and stored.expires_at > now + self._skew:
                self._entries[stored.scope_key] = stored
        self._reindex()

    def _save(self) -> None:
        self._reindex()
        if self._path is None:
            return
        body = json.dumps(
            {
                "version": 1,
                "session": self._session,
                "tokens": [e.token for e in self._entries.values()],
            }
        )
        tmp = self._path.with_name(self._path.name + ".tmp")
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # also when the file existed with wider permissions
            os.write(fd, body.encode())
        finally:
            os.close(fd)
        os.replace(tmp, self._path)
