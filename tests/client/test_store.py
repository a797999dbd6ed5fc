"""The token store: one token per scope set, expiry, single use, sessions, a 0600 file."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading

from stepguard.client import TokenStore
from stepguard.core.clock import FixedClock

NOW = 1_700_000_000


def jwt(scope: str, exp: float, single_use: bool = False, **extra: object) -> str:
    """An unsigned JWT-shaped token: the store reads, never verifies (the guard does)."""

    def part(data: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"scope": scope, "exp": exp, "single_use": single_use, **extra}
    return f"{part({'alg': 'EdDSA', 'typ': 'elevated+jwt'})}.{part(claims)}.sig"


def test_one_token_per_scope_set_and_lookup_by_any_of_its_scopes() -> None:
    store = TokenStore(clock=FixedClock(NOW))
    a = jwt("wallet:sign wallet:export", NOW + 300)
    b = jwt("wallet:export wallet:sign", NOW + 200)  # same set, other order: replaces a
    c = jwt("user:update", NOW + 600)
    for token in (a, b, c):
        assert store.add(token) is not None
    assert len(store) == 2
    assert store.peek("wallet:export") == b and store.peek("wallet:sign") == b
    assert store.peek("wallet:sign wallet:export") == b
    assert store.peek("user:update wallet:export") is None  # no token covers both
    assert store.peek("user:delete") is None


def test_unusable_tokens_are_dropped() -> None:
    store = TokenStore(clock=FixedClock(NOW))
    assert store.add(jwt("", NOW + 300)) is None
    assert store.add(jwt("user:update", NOW - 1)) is None
    assert store.add(jwt("user:update", NOW + 3)) is None  # inside the 5 s skew margin
    assert store.add("not.a.jwt") is None and store.add("garbage") is None
    no_exp = jwt("user:update", NOW + 300).split(".")
    no_exp[1] = base64.urlsafe_b64encode(b'{"scope":"user:update"}').rstrip(b"=").decode()
    assert store.add(".".join(no_exp)) is None
    assert len(store) == 0


def test_expiry_and_single_use() -> None:
    clock = FixedClock(NOW)
    store = TokenStore(clock=clock)
    once = jwt("wallet:export", NOW + 300, single_use=True)
    store.add(once)
    assert store.peek("wallet:export") == once  # a peek does not use it
    assert store.take("wallet:export") == once
    assert store.take("wallet:export") is None  # handed out once
    store.add(jwt("user:update", NOW + 600))
    assert store.take("user:update") is not None and store.take("user:update") is not None
    clock.advance(596)  # within 5 s of exp: treated as expired
    assert store.peek("user:update") is None and len(store) == 0


def test_single_use_token_is_handed_to_one_of_many_threads() -> None:
    store = TokenStore(clock=FixedClock(NOW))
    store.add(jwt("wallet:export", NOW + 300, single_use=True))
    got: list[str | None] = []
    barrier = threading.Barrier(16)

    def grab() -> None:
        barrier.wait()
        got.append(store.take("wallet:export"))

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for g in got if g is not None) == 1


def test_file_persistence_is_private_and_bound_to_the_session(tmp_path) -> None:
    path = tmp_path / "state" / "tokens.json"
    clock = FixedClock(NOW)
    store = TokenStore(clock=clock, path=path)
    store.bind("session-one")
    token = jwt("user:update", NOW + 600)
    store.add(token)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "session-one" not in path.read_text()  # only a fingerprint is written

    again = TokenStore(clock=clock, path=path)
    again.bind("session-one")
    assert again.peek("user:update") == token  # restored for the same session
    other = TokenStore(clock=clock, path=path)
    other.bind("session-two")
    assert other.peek("user:update") is None  # another session never sees them

    store.add(token)
    clock.advance(700)
    assert TokenStore(clock=clock, path=path).peek("user:update") is None  # expired on load
    store.clear()
    assert not path.exists()


def test_a_token_file_others_can_read_is_not_used(tmp_path) -> None:
    path = tmp_path / "tokens.json"
    store = TokenStore(clock=FixedClock(NOW), path=path)
    store.add(jwt("user:update", NOW + 600))
    os.chmod(path, 0o644)
    assert TokenStore(clock=FixedClock(NOW), path=path).peek("user:update") is None
