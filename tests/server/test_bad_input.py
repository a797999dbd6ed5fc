"""Bad input for every endpoint of ``/openapi.json``: a 4xx JSON error with a stable ``code``,
never a 500, and nothing half-written.

The operations come from the app's own OpenAPI document, so routes added later are covered
without touching this file. Each test walks every operation once per database (SQLite and
PostgreSQL) and reports all failures together.

Conventions the tests rely on (and enforce):
* ``/admin/...`` needs the admin key: without it, 401 ``invalid_api_key``, whatever the body.
* ``/sdk/{environment_id}/...`` acts for a user: without a session it must answer 401, unless
  its path starts with one of :data:`PUBLIC_SDK_PREFIXES` (sign-in, which has no session yet,
  and the dev outbox, which is 404 outside dev mode).
* Failed requests may add audit events (failed verifications are audited on purpose), so the
  "nothing half-written" check compares every table but :data:`BOOKKEEPING_TABLES`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from _server_helpers import ADMIN_KEY, AdminApi, UserSession, row_counts
from fastapi import FastAPI

#: SDK path prefixes meant to work without a session.
PUBLIC_SDK_PREFIXES = ("/sdk/{environment_id}/sign-in/", "/sdk/{environment_id}/dev/")
#: Tables a failed request may legitimately write to.
BOOKKEEPING_TABLES = frozenset({"audit_events"})
METHODS = ("get", "post", "put", "patch", "delete")

UNKNOWN_IDS = [
    "unknown_id_0000000000000000",
    "x" * 3000,
    "nul%00inside",  # PostgreSQL refuses NUL in text
    "%FF%FE",  # not UTF-8
    "%27%3B%20DROP%20TABLE%20users%3B--",
]


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any] = field(repr=False)
    doc: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def path_params(self) -> list[str]:
        return [p["name"] for p in self.spec.get("parameters", []) if p["in"] == "path"]

    @property
    def query_params(self) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == "query"]

    @property
    def json_body_schema(self) -> dict[str, Any] | None:
        content = self.spec.get("requestBody", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema")
        return None if schema is None else resolve(self.doc, schema)

    @property
    def has_body(self) -> bool:
        return "requestBody" in self.spec

    @property
    def is_admin(self) -> bool:
        return self.path.startswith("/admin/")

    @property
    def is_sdk(self) -> bool:
        return self.path.startswith("/sdk/") and not self.path.startswith(PUBLIC_SDK_PREFIXES)


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def operations(doc: dict[str, Any]) -> list[Operation]:
    return [
        Operation(method, path, spec, doc)
        for path, item in sorted(doc["paths"].items())
        for method, spec in item.items()
        if method in METHODS
    ]


@dataclass
class World:
    """Real ids to put in paths and bodies, and the credentials to send."""

    app: FastAPI
    client: httpx.AsyncClient
    user: UserSession
    doc: dict[str, Any]
    failures: list[str] = field(default_factory=list)
    counter: int = 0
    #: Row counts after the last checked request (None: unknown, e.g. after a request that may
    #: legitimately write).
    counts: dict[str, int] | None = None

    @property
    def ids(self) -> dict[str, str]:
        return {
            "environment_id": self.user.environment_id,
            "user_id": self.user.user_id,
            "session_id": self.user.session_id,
        }

    def auth(self) -> dict[str, str]:
        return {"X-StepGuard-Admin-Key": ADMIN_KEY, **self.user.headers}

    def url(self, op: Operation, overrides: dict[str, str] | None = None) -> str:
        path = op.path
        values = {**self.ids, **(overrides or {})}
        for name in op.path_params:
            path = path.replace("{" + name + "}", values.get(name, f"unknown_{name}"))
        return path

    def fresh_name(self) -> str:
        self.counter += 1
        return f"bad-input-{self.counter}"

    def sample(self, schema: dict[str, Any], name: str = "") -> Any:
        """A plausible valid value for ``schema`` (best effort; only used as a baseline)."""
        schema = resolve(self.doc, schema)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branches = [b for b in schema[key] if resolve(self.doc, b).get("type") != "null"]
                return self.sample(branches[0], name) if branches else None
        if "enum" in schema:
            return schema["enum"][0]
        if "const" in schema:
            return schema["const"]
        kind = schema.get("type")
        lname = name.lower()
        if name in self.ids:
            return self.ids[name]
        if kind == "string":
            if "email" in lname:
                return f"{self.fresh_name()}@example.com"
            if "phone" in lname:
                return f"+1415555{self.counter % 10000:04d}"
            if "scope" in lname:
                return "wallet:export"
            if lname == "name":
                return self.fresh_name()
            return "x" * max(1, int(schema.get("minLength", 1)))
        if kind in ("integer", "number"):
            low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
            high = schema.get("maximum", schema.get("exclusiveMaximum", 10**6))
            return int(min(max(60, low + 1 if "exclusiveMinimum" in schema else low), high))
        if kind == "boolean":
            return True
        if kind == "array":
            if "scope" in lname:
                return ["wallet:export"]
            return [self.sample(schema.get("items", {}), name)]
        if kind == "object" or "properties" in schema:
            props = schema.get("properties", {})
            return {
                k: self.sample(v, k) for k, v in props.items() if k in schema.get("required", [])
            }
        return "x"

    def check(
        self, op: Operation, label: str, r: httpx.Response, *, expect: int | None = None
    ) -> None:
        where = f"{op.name} [{label}] -> {r.status_code} {r.text[:200]!r}"
        if r.status_code >= 500:
            self.failures.append(f"5xx: {where}")
            return
        if not 400 <= r.status_code < 500:
            self.failures.append(f"not refused: {where}")
            return
        if expect is not None and r.status_code != expect:
            self.failures.append(f"expected {expect}: {where}")
        try:
            body = r.json()
        except ValueError:
            self.failures.append(f"not JSON: {where}")
            return
        if not isinstance(body, dict) or not isinstance(body.get("code"), str) or not body["code"]:
            self.failures.append(f"no code: {where}")
        ctype = r.headers.get("content-type", "")
        if "json" not in ctype:
            self.failures.append(f"content-type {ctype!r}: {where}")

    async def send(
        self,
        op: Operation,
        label: str,
        *,
        url: str | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        expect: int | None = None,
        expect_code: str | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one bad request; check it was refused properly and wrote nothing."""
        before = self.counts or await row_counts(self.app, exclude=BOOKKEEPING_TABLES)
        hdrs = {"Content-Type": "application/json"} if content is not None else {}
        hdrs.update(self.auth() if headers is None else headers)
        try:
            r = await self.client.request(
                op.method.upper(), url or self.url(op), headers=hdrs, content=content, params=params
            )
        except Exception as exc:  # the in-process transport re-raises what would be a 500
            self.failures.append(f"crash: {op.name} [{label}] {type(exc).__name__}: {exc!s:.200}")
            return httpx.Response(500)
        self.check(op, label, r, expect=expect)
        if expect_code is not None and r.status_code < 500:
            try:
                code = r.json().get("code")
            except ValueError:
                code = None
            if code != expect_code:
                self.failures.append(f"expected code {expect_code}: {op.name} [{label}] -> {code}")
        after = self.counts = await row_counts(self.app, exclude=BOOKKEEPING_TABLES)
        if after != before:
            changed = {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)}
            self.failures.append(f"half-written: {op.name} [{label}] changed {changed}")
        return r

    def report(self) -> None:
        assert not self.failures, "\n".join(self.failures)


async def world_for(app: FastAPI, client: httpx.AsyncClient, admin: AdminApi) -> World:
    user = await admin.user_with_session(email="victim@example.com")
    doc = (await client.get("/openapi.json")).json()
    return World(app, client, user, doc)


def wrong_value(schema: dict[str, Any], doc: dict[str, Any]) -> Any:
    """A JSON value that matches none of the types ``schema`` allows, or ``...`` if any does."""
    schema = resolve(doc, schema)
    branches = schema.get("anyOf") or schema.get("oneOf") or [schema]
    types = {resolve(doc, b).get("type") for b in branches}
    if None in types:
        return ...  # untyped: anything goes
    candidates: list[tuple[str, Any]] = [
        ("string", 12345),
        ("integer", "12"),
        ("number", "1.5"),
        ("boolean", "true"),
        ("array", {"a": 1}),
        ("object", [1]),
    ]
    accepts = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        "null": lambda v: v is None,
    }
    for _, value in candidates:
        if not any(accepts[t](value) for t in types if t in accepts):
            return value
    return ...


async def _setup(server_app: FastAPI, server_client: httpx.AsyncClient, admin: AdminApi) -> World:
    w = await world_for(server_app, server_client, admin)
    assert len(operations(w.doc)) >= 10
    return w


async def test_openapi_document_serves(server_client: httpx.AsyncClient) -> None:
    r = await server_client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    names = {op.name for op in operations(doc)}
    for expected in (
        "GET /.well-known/jwks.json",
        "GET /.well-known/stepguard-configuration",
        "POST /admin/environments",
        "POST /admin/environments/{environment_id}/users",
        "POST /admin/environments/{environment_id}/sessions",
        "DELETE /admin/environments/{environment_id}/sessions/{session_id}",
        "PATCH /admin/environments/{environment_id}/policy",
        "GET /sdk/{environment_id}/session",
    ):
        assert expected in names


async def test_malformed_json(
    server_app: FastAPI, server_client: httpx.AsyncClient, admin: AdminApi
) -> None:
    w = await _setup(server_app, server_client, admin)
    bodies = {
        "truncated": b'{"name": "x"',
        "garbage": b"not json at all",
        "bad-utf8": b'{"name": "\xff\xfe"}',
        "nan": b'{"name": NaN, "ttl_seconds": Infinity}',
        "deep": b"[" * 5000 + b"]" * 5000,
    }
    for op in operations(w.doc):
        if op.json_body_schema is None:
            continue
        for label, content in bodies.items():
            r = await w.send(op, label, content=content)
            if label == "truncated" and r.status_code < 500:
                code = r.json().get("code")
                if code != "invalid_json" or r.status_code != 400:
                    w.failures.append(f"truncated JSON: {op.name} -> {r.status_code} {code}")
    w.report()


async def test_wrong_types(
    server_app: FastAPI, server_client: httpx.AsyncClient, admin: AdminApi
) -> None:
    w = await _setup(server_app, server_client, admin)
    for op in operations(w.doc):
        schema = op.json_body_schema
        if schema is None:
            continue
        for label, value in {"array": [], "string": "x", "null": None}.items():
            await w.send(op, f"body is {label}", content=json.dumps(value).encode())
        props: dict[str, Any] = schema.get("properties", {})
        baseline = w.sample(schema)
        for prop, prop_schema in props.items():
            bad = wrong_value(prop_schema, w.doc)
            if bad is ...:
                continue
            body = {**baseline, prop: bad}
            await w.send(op, f"{prop}={bad!r}", content=json.dumps(body).encode())
        if schema.get("additionalProperties") is False:
            body = {**baseline, "unexpected_field": 1}
            await w.send(op, "unknown field", content=json.dumps(body).encode())
    w.report()


async def test_unknown_ids(
    server_app: FastAPI, server_client: httpx.AsyncClient, admin: AdminApi
) -> None:
    w = await _setup(server_app, server_client, admin)
    for op in operations(w.doc):
        schema = op.json_body_schema
        content = None if schema is None else json.dumps(w.sample(schema)).encode()
        for param in op.path_params:
            for unknown in UNKNOWN_IDS:
                await w.send(
                    op, f"{param}={unknown[:30]}", url=w.url(op, {param: unknown}), content=content
                )
        # Ids inside the body.
        if schema is not None:
            for prop in schema.get("properties", {}):
                if prop.endswith("_id") and prop not in ("external_id",):
                    for unknown in ("unknown_id_0000000000000000", "a\u0000b"):
                        body = {**w.sample(schema), prop: unknown}
                        await w.send(
                            op, f"body {prop}={unknown!r}", content=json.dumps(body).encode()
                        )
    w.report()


async def test_bad_query_parameters(
    server_app: FastAPI, server_client: httpx.AsyncClient, admin: AdminApi
) -> None:
    """Query parameters of the wrong type or out of range: refused or ignored, never a 500."""
    w = await _setup(server_app, server_client, admin)
    for op in operations(w.doc):
        for param in op.query_params:
            values = ["abc", "1e999", "9" * 40, "-" + "9" * 40, "0", "-1", "a\u0000b", "x" * 5000]
            for value in values:
                label = f"?{param['name']}={value[:20]}"
                w.counts = None  # refused or ignored: either way it may not be counted
                try:
                    r = await w.client.request(
                        op.method.upper(),
                        w.url(op),
                        headers=w.auth(),
                        params={param["name"]: value},
                    )
                except Exception as exc:
                    w.failures.append(
                        f"crash: {op.name} [{label}] {type(exc).__name__}: {exc!s:.200}"
                    )
                    continue
                if r.status_code >= 500:
                    w.failures.append(f"5xx: {op.name} [{label}] {r.text[:200]}")
                elif r.status_code >= 400:
                    w.check(op, label, r)
    w.report()


async def test_oversized_bodies(
    server_app: FastAPI, server_client: httpx.AsyncClient, admin: AdminApi
) -> None:
    w = await _setup(server_app, server_client, admin)
    limit = server_app.state.settings.max_body_bytes
    big = b'{"name": "' + b"a" * limit + b'"}'
    for op in operations(w.doc):
        await w.send(op, "content-length", content=big, expect=413, expect_code="payload_too_large")
        if not op.has_body:
            continue

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 8192):
                yield big[i : i + 8192]

        before = w.counts = await row_counts(server_app, exclude=BOOKKEEPING_TABLES)
        r = await w.client.request(
            op.method.upper(),
            w.url(op),
            headers={"Content-Type": "application/json", **w.auth()},
            content=chunks(),
        )
        w.check(op, "chunked", r, expect=413)
        if await row_counts(server_app, exclude=BOOKKEEPING_TABLES) != before:
            w.failures.append(f"half-written: {op.name} [chunked]")
    w.report()


async def test_missing_or_wrong_auth(
    server_app: FastAPI, server_client: httpx.AsyncClient, admin: AdminApi
) -> None:
    w = await _setup(server_app, server_client, admin)
    for op in operations(w.doc):
        schema = op.json_body_schema
        content = None if schema is None else json.dumps(w.sample(schema)).encode()
        if op.is_admin:
            for label, headers in {
                "no key": {},
                "wrong key": {"X-StepGuard-Admin-Key": "sgadm_wrong"},
                "session instead of key": w.user.headers,
            }.items():
                await w.send(
                    op,
                    label,
                    headers=headers,
                    content=content,
                    expect=401,
                    expect_code="invalid_api_key",
                )
        elif op.is_sdk:
            for label, headers in {
                "no session": {},
                "garbage session": {"Authorization": "Bearer sgs_garbage"},
                "admin key instead of session": {"Authorization": f"Bearer {ADMIN_KEY}"},
                "huge token": {"Authorization": "Bearer " + "a" * 6000},
            }.items():
                await w.send(op, label, headers=headers, content=content, expect=401)
        else:
            # Public endpoints: no auth needed; they must simply not fail.
            w.counts = None
            r = await w.client.request(op.method.upper(), w.url(op), content=content)
            if r.status_code >= 500:
                w.failures.append(f"5xx: {op.name} [public] {r.text[:200]}")
    w.report()


async def test_unknown_routes_and_methods(server_client: httpx.AsyncClient) -> None:
    r = await server_client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await server_client.put("/.well-known/jwks.json")
    assert r.status_code == 405 and r.json()["code"] == "http_method_not_allowed"
