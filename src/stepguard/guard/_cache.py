"""A bounded cache of tokens that already passed signature and claim verification.

A multi-use (time-bound) token is presented again and again for its lifetime; verifying its
signature each time would cost a full Ed25519 verify per request. The cache maps the exact token
string to its :class:`VerifiedElevatedToken`, so any change to a single byte is a miss. Only what
cannot change is cached: the guard still checks expiry, subject, session, scope and ``max_age`` on
every hit (:func:`check_step_up`), and that the signing key is still in the current keyset (a
rotated-out key stops working for cached tokens too). Single-use tokens are never cached.
"""

from __future__ import annotations

import threading

from stepguard.core.tokens import VerifiedElevatedToken

__all__ = ["VerifiedTokenCache"]


class VerifiedTokenCache:
    """Token string -> verified token, at most ``max_entries`` (oldest evicted first)."""

    def __init__(self, max_entries: int = 4096) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self._entries: dict[str, VerifiedElevatedToken] = {}
        # Sync adapters (Flask, Django) call in from many threads: eviction must not race.
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> VerifiedElevatedToken | None:
        found = self._entries.get(token)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def put(self, token: str, verified: VerifiedElevatedToken) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            entries = self._entries
            while len(entries) >= self.max_entries:
                entries.pop(next(iter(entries)))
            entries[token] = verified

    def discard(self, token: str) -> None:
        with self._lock:
            self._entries.pop(token, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
