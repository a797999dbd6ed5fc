"""What the wallet sign-in methods (SIWE, SIWS) share: message grammar, nonces and time checks.

Sign-In with Ethereum (EIP-4361) and Sign In With Solana (the wallet-standard ``SolanaSignInInput``
text) are the same message with a different header, address form and chain-id form::

    [scheme "://"] domain " wants you to sign in with your <Chain> account:" LF
    address LF
    LF [statement LF] LF          (SIWS drops the blank line when there is no statement)
    "URI: " uri LF "Version: 1" LF "Chain ID: " chain-id LF "Nonce: " nonce LF
    "Issued At: " date-time [LF "Expiration Time: " ...] [LF "Not Before: " ...]
    [LF "Request ID: " *pchar] [LF "Resources:" *(LF "- " URI)]

The parser here follows the EIP-4361 ABNF strictly (RFC 3986 ``authority`` and ``URI``, RFC 3339
``date-time``, fields in order, nothing left over); a :class:`SignInFormat` supplies the parts that
differ per chain. The server issues the message, so :func:`check_response` also demands that every
field of the signed text equals the issued one (the wallet-standard ``verifySignIn`` rule) and
enforces what ``verifySignIn`` leaves out: challenge expiry, ``issued-at`` window, ``expiration-time``
and ``not-before`` against the server clock, and the chain-id allowlist.
"""

from __future__ import annotations

import hmac
import re
import secrets
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

from stepguard.core.errors import CodeExpired, InvalidSignature, ValidationFailed

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "MAX_MESSAGE_CHARS",
    "MAX_TTL_SECONDS",
    "MalformedSignInMessage",
    "SignInFormat",
    "SignInMessage",
    "WalletChallenge",
    "build_sign_in_message",
    "check_issued_at",
    "check_response",
    "check_validity_period",
    "format_timestamp",
    "issue_challenge",
    "make_format",
    "new_nonce",
    "parse_sign_in_message",
    "parse_timestamp",
]

#: EIP-4361 asks verifiers to bound field lengths against denial of service.
MAX_MESSAGE_CHARS = 4096
MAX_RESOURCES = 32
DEFAULT_TTL_SECONDS = 300
MAX_TTL_SECONDS = 600
#: Wallet and server clocks drift; Phantom itself allows +-10 min, we allow 60 s into the future.
CLOCK_SKEW_SECONDS = 60

_NONCE_ALPHABET = string.ascii_letters + string.digits
#: 22 base-62 characters carry 130 bits; requirement 38 asks for >= 96 bits.
_NONCE_LENGTH = 22
#: A caller-supplied nonce needs 17 base-62 characters (101 bits) to meet the 96-bit floor.
_MIN_NONCE_LENGTH = 17


class MalformedSignInMessage(ValidationFailed):
    """The text is not a well-formed sign-in message (it fails the EIP-4361 ABNF)."""

    description = "The sign-in message is malformed."


# --- RFC 3986 grammar, composed from its ABNF (appendix A) -------------------------------------
_UNRESERVED = r"[A-Za-z0-9\-._~]"
_PCT = r"%[0-9A-Fa-f]{2}"
_SUB_DELIMS = r"[!$&'()*+,;=]"
_PCHAR = rf"(?:{_UNRESERVED}|{_PCT}|{_SUB_DELIMS}|[:@])"
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
_USERINFO = rf"(?:{_UNRESERVED}|{_PCT}|{_SUB_DELIMS}|:)*"
_DEC_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"{_DEC_OCTET}(?:\.{_DEC_OCTET}){{3}}"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_IPV4})"
_IPV6 = "|".join(
    [
        rf"(?:{_H16}:){{6}}{_LS32}",
        rf"::(?:{_H16}:){{5}}{_LS32}",
        rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
        rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
        rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
        rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
    ]
)
_IPVFUTURE = rf"v[0-9A-Fa-f]+\.(?:{_UNRESERVED}|{_SUB_DELIMS}|:)+"
_IP_LITERAL = rf"\[(?:{_IPV6}|{_IPVFUTURE})\]"
_REG_NAME = rf"(?:{_UNRESERVED}|{_PCT}|{_SUB_DELIMS})"
_PORT = r"[0-9]*"
_AUTHORITY = rf"(?:{_USERINFO}@)?(?:{_IP_LITERAL}|{_IPV4}|{_REG_NAME}*)(?::{_PORT})?"
#: A sign-in ``domain`` is an authority with a non-empty host (an empty one names no site).
_DOMAIN = rf"(?:{_USERINFO}@)?(?:{_IP_LITERAL}|{_IPV4}|{_REG_NAME}+)(?::{_PORT})?"
_SEGMENT = rf"{_PCHAR}*"
_SEGMENT_NZ = rf"{_PCHAR}+"
_HIER_PART = (
    rf"(?://{_AUTHORITY}(?:/{_SEGMENT})*"
    rf"|/(?:{_SEGMENT_NZ}(?:/{_SEGMENT})*)?"
    rf"|{_SEGMENT_NZ}(?:/{_SEGMENT})*"
    r"|)"
)
_QUERY = rf"(?:{_PCHAR}|[/?])*"
_URI = rf"{_SCHEME}:{_HIER_PART}(?:\?{_QUERY})?(?:#{_QUERY})?"

_URI_RE = re.compile(_URI)
_DOMAIN_RE = re.compile(_DOMAIN)
_SCHEME_RE = re.compile(_SCHEME)
#: EIP-4361 ``statement = *( reserved / unreserved / " " )``: printable ASCII minus a few, no LF.
_STATEMENT_RE = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;= ]+")
_NONCE_RE = re.compile(r"[A-Za-z0-9]{8,}")
_REQUEST_ID_RE = re.compile(rf"{_PCHAR}*")
_VERSION_RE = re.compile(r"1")
# RFC 3339 §5.6 ``date-time``; ABNF literals are case-insensitive, so "t"/"z" are allowed too.
_DATE_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def new_nonce() -> str:
    """A fresh alphanumeric nonce with 130 bits from the CSPRNG (EIP-4361 §nonce, req. 38)."""
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(_NONCE_LENGTH))


def format_timestamp(ts: float) -> str:
    """RFC 3339 UTC with milliseconds, as wallets and siwe print it (``2021-09-30T16:25:24.000Z``)."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@lru_cache(maxsize=4096)  # one message's times are read by the parser and again by the checks
def parse_timestamp(text: str) -> float:
    """Unix seconds for an RFC 3339 ``date-time``; raises :class:`MalformedSignInMessage`.

    Calendar-invalid dates (``2022-02-31``) fail, as spruceid's ``verification_negative`` demands.
    Leap seconds (``:60``) are refused: no wallet emits them and datetime cannot hold them.
    """
    m = _DATE_TIME_RE.fullmatch(text)
    if m is None:
        raise MalformedSignInMessage(f"not an RFC 3339 date-time: {text[:40]!r}")
    year, month, day, hour, minute, second = (int(m[i]) for i in range(1, 7))
    frac = float(m[7]) if m[7] else 0.0
    try:
        if m[8]:
            tz = UTC
        else:
            off_h, off_m = int(m[10]), int(m[11])
            if off_h > 23 or off_m > 59:
                raise ValueError("offset out of range")
            offset = timedelta(hours=off_h, minutes=off_m)
            tz = timezone(-offset if m[9] == "-" else offset)
        dt = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError:
        raise MalformedSignInMessage(f"invalid date-time: {text[:40]!r}") from None
    return dt.timestamp() + frac


@dataclass(frozen=True, slots=True)
class SignInMessage:
    """The fields of a SIWE/SIWS message, as text exactly as it appears in the message."""

    domain: str
    address: str
    uri: str
    version: str
    chain_id: str
    nonce: str
    issued_at: str
    scheme: str | None = None
    statement: str | None = None
    expiration_time: str | None = None
    not_before: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SignInFormat:
    """The per-chain parts of the grammar. Build one with :func:`make_format`."""

    chain: str
    header: re.Pattern[str]
    address: re.Pattern[str]
    chain_id: re.Pattern[str]
    #: SIWE keeps ``LF LF [statement LF] LF``; SIWS writes ``\n\n`` + statement only if present.
    blank_line_without_statement: bool
    #: Ethereum addresses compare case-insensitively once their EIP-55 checksum has been checked.
    address_case_insensitive: bool
    #: Extra check on the address text (EIP-55 checksum, base58 key length); True when valid.
    address_valid: Callable[[str], bool]


def make_format(
    *,
    chain: str,
    address: str,
    chain_id: str,
    blank_line_without_statement: bool,
    address_case_insensitive: bool,
    address_valid: Callable[[str], bool],
) -> SignInFormat:
    """Compile the grammar for one chain (``chain`` is the word in the header line)."""
    header = re.compile(
        rf"(?:(?P<scheme>{_SCHEME})://)?(?P<domain>{_DOMAIN})"
        rf" wants you to sign in with your {re.escape(chain)} account:"
    )
    return SignInFormat(
        chain=chain,
        header=header,
        address=re.compile(address),
        chain_id=re.compile(chain_id),
        blank_line_without_statement=blank_line_without_statement,
        address_case_insensitive=address_case_insensitive,
        address_valid=address_valid,
    )


class _Lines:
    """A cursor over the message lines; every read names the field it expected."""

    def __init__(self, text: str) -> None:
        self._lines = text.split("\n")
        self._i = 0

    def peek(self) -> str | None:
        return self._lines[self._i] if self._i < len(self._lines) else None

    def take(self, what: str) -> str:
        line = self.peek()
        if line is None:
            raise MalformedSignInMessage(f"message ends before {what}")
        self._i += 1
        return line

    def blank(self, where: str) -> None:
        if self.take(f"the blank line {where}") != "":
            raise MalformedSignInMessage(f"expected a blank line {where}")

    def field(self, label: str, pattern: re.Pattern[str]) -> str:
        line = self.take(f"the {label} field")
        prefix = f"{label}: "
        if not line.startswith(prefix):
            raise MalformedSignInMessage(f"expected the {label} field")
        value = line[len(prefix) :]
        if pattern.fullmatch(value) is None:
            raise MalformedSignInMessage(f"invalid {label}")
        return value

    def optional(self, label: str, pattern: re.Pattern[str]) -> str | None:
        line = self.peek()
        if line is None or not line.startswith(f"{label}: "):
            return None
        return self.field(label, pattern)

    def done(self) -> bool:
        return self._i >= len(self._lines)


def parse_sign_in_message(text: str, fmt: SignInFormat) -> SignInMessage:
    """Parse ``text`` strictly per the EIP-4361 ABNF (with ``fmt``'s chain parts).

    Raises :class:`MalformedSignInMessage` naming the first field that does not conform.
    """
    if not isinstance(text, str):
        raise MalformedSignInMessage("the message must be text")
    if len(text) > MAX_MESSAGE_CHARS:
        raise MalformedSignInMessage("message too long")
    lines = _Lines(text)
    head = fmt.header.fullmatch(lines.take("the header"))
    if head is None:
        raise MalformedSignInMessage(
            f"expected '<domain> wants you to sign in with your {fmt.chain} account:'"
        )
    address = lines.take("the address")
    if fmt.address.fullmatch(address) is None or not fmt.address_valid(address):
        raise MalformedSignInMessage(f"invalid {fmt.chain} address")
    lines.blank("after the address")
    statement: str | None = None
    nxt = lines.peek()
    if fmt.blank_line_without_statement:
        # SIWE: LF [statement LF] LF — a line that is not blank here must be the statement.
        if nxt != "":
            statement = lines.take("the statement")
            if _STATEMENT_RE.fullmatch(statement) is None:
                raise MalformedSignInMessage("invalid statement")
        lines.blank("after the statement")
    elif nxt is not None and not nxt.startswith("URI: "):
        statement = lines.take("the statement")
        if _STATEMENT_RE.fullmatch(statement) is None:
            raise MalformedSignInMessage("invalid statement")
        lines.blank("after the statement")
    uri = lines.field("URI", _URI_RE)
    version = lines.field("Version", _VERSION_RE)
    chain_id = lines.field("Chain ID", fmt.chain_id)
    nonce = lines.field("Nonce", _NONCE_RE)
    issued_at = lines.field("Issued At", _DATE_TIME_RE)
    parse_timestamp(issued_at)
    expiration_time = lines.optional("Expiration Time", _DATE_TIME_RE)
    if expiration_time is not None:
        parse_timestamp(expiration_time)
    not_before = lines.optional("Not Before", _DATE_TIME_RE)
    if not_before is not None:
        parse_timestamp(not_before)
    request_id = lines.optional("Request ID", _REQUEST_ID_RE)
    resources: list[str] = []
    if lines.peek() == "Resources:":
        lines.take("Resources")
        while not lines.done():
            line = lines.take("a resource")
            if not line.startswith("- ") or _URI_RE.fullmatch(line[2:]) is None:
                raise MalformedSignInMessage("invalid resource")
            resources.append(line[2:])
            if len(resources) > MAX_RESOURCES:
                raise MalformedSignInMessage("too many resources")
    if not lines.done():
        raise MalformedSignInMessage("unexpected text after the last field")
    return SignInMessage(
        domain=head["domain"],
        address=address,
        uri=uri,
        version=version,
        chain_id=chain_id,
        nonce=nonce,
        issued_at=issued_at,
        scheme=head["scheme"],
        statement=statement,
        expiration_time=expiration_time,
        not_before=not_before,
        request_id=request_id,
        resources=tuple(resources),
    )


def build_sign_in_message(msg: SignInMessage, fmt: SignInFormat) -> str:
    """The message text for ``msg``; raises :class:`MalformedSignInMessage` if a field is invalid.

    The text is parsed back and compared, so a field that would smuggle a line break or break the
    grammar (``parsing_negative_objects``) cannot produce a message that means something else.
    """
    prefix = f"{msg.scheme}://" if msg.scheme else ""
    out = [f"{prefix}{msg.domain} wants you to sign in with your {fmt.chain} account:", msg.address]
    out.append("")
    if msg.statement is not None:
        out += [msg.statement, ""]
    elif fmt.blank_line_without_statement:
        out.append("")
    out += [
        f"URI: {msg.uri}",
        f"Version: {msg.version}",
        f"Chain ID: {msg.chain_id}",
        f"Nonce: {msg.nonce}",
        f"Issued At: {msg.issued_at}",
    ]
    if msg.expiration_time is not None:
        out.append(f"Expiration Time: {msg.expiration_time}")
    if msg.not_before is not None:
        out.append(f"Not Before: {msg.not_before}")
    if msg.request_id is not None:
        out.append(f"Request ID: {msg.request_id}")
    if msg.resources:
        out.append("Resources:")
        out += [f"- {r}" for r in msg.resources]
    text = "\n".join(out)
    if parse_sign_in_message(text, fmt) != msg:
        raise MalformedSignInMessage("a field does not fit the sign-in message grammar")
    return text


@dataclass(frozen=True, slots=True)
class WalletChallenge:
    """What the server stores between ``begin`` and ``complete`` (the nonce is single-use)."""

    message: SignInMessage
    text: str
    expires_at: float

    @property
    def nonce(self) -> str:
        return self.message.nonce


def issue_challenge(
    fmt: SignInFormat,
    *,
    domain: str,
    uri: str,
    address: str,
    chain_id: str,
    now: float,
    nonce: str | None,
    statement: str | None,
    ttl_seconds: int,
    scheme: str | None = None,
    request_id: str | None = None,
    resources: Iterable[str] = (),
) -> tuple[SignInMessage, str, float]:
    """Fields, text and expiry of a new challenge (``Expiration Time`` = ``now + ttl_seconds``)."""
    if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValidationFailed(f"ttl_seconds must be in 1..{MAX_TTL_SECONDS}")
    if nonce is None:
        nonce = new_nonce()
    elif len(nonce) < _MIN_NONCE_LENGTH or not nonce.isascii() or not nonce.isalnum():
        raise ValidationFailed("a nonce needs at least 17 alphanumeric characters (96 bits)")
    if scheme is not None and _SCHEME_RE.fullmatch(scheme) is None:
        raise ValidationFailed("invalid scheme")
    if _DOMAIN_RE.fullmatch(domain) is None:
        raise ValidationFailed("invalid domain")
    expires_at = now + ttl_seconds
    msg = SignInMessage(
        domain=domain,
        address=address,
        uri=uri,
        version="1",
        chain_id=chain_id,
        nonce=nonce,
        issued_at=format_timestamp(now),
        scheme=scheme,
        statement=statement,
        expiration_time=format_timestamp(expires_at),
        request_id=request_id,
        resources=tuple(resources),
    )
    try:
        text = build_sign_in_message(msg, fmt)
    except MalformedSignInMessage as exc:
        raise ValidationFailed(f"cannot issue this sign-in message: {exc.detail}") from None
    return msg, text, expires_at


_FIELD_LABELS = {
    "domain": "domain",
    "address": "address",
    "uri": "URI",
    "version": "version",
    "chain_id": "chain ID",
    "nonce": "nonce",
    "issued_at": "issued-at time",
    "scheme": "scheme",
    "statement": "statement",
    "expiration_time": "expiration time",
    "not_before": "not-before time",
    "request_id": "request ID",
    "resources": "resources",
}


def _check_matches_issued(issued: SignInMessage, got: SignInMessage, fmt: SignInFormat) -> None:
    for f in fields(SignInMessage):
        want, have = getattr(issued, f.name), getattr(got, f.name)
        if f.name == "address" and fmt.address_case_insensitive:
            same = want.lower() == have.lower()
        elif f.name == "nonce":
            same = hmac.compare_digest(want.encode(), have.encode())
        else:
            same = want == have
        if not same:
            raise InvalidSignature(
                f"the signed message's {_FIELD_LABELS[f.name]} does not match the issued challenge"
            )


def check_validity_period(msg: SignInMessage, *, now: float) -> None:
    """``expiration-time`` and ``not-before`` against the server clock (EIP-4361 §verifying)."""
    if msg.expiration_time is not None and now >= parse_timestamp(msg.expiration_time):
        raise CodeExpired("the sign-in message has expired")
    if msg.not_before is not None and now < parse_timestamp(msg.not_before):
        raise InvalidSignature("the sign-in message is not valid yet")


def check_issued_at(msg: SignInMessage, *, now: float, max_age: float) -> None:
    """``issued-at`` lies in ``[now - max_age, now + 60 s]`` (requirement 38)."""
    issued = parse_timestamp(msg.issued_at)
    if issued > now + CLOCK_SKEW_SECONDS:
        raise InvalidSignature("the sign-in message was issued in the future")
    if now - issued > max_age:
        raise CodeExpired("the sign-in message is too old")


def check_response(
    state: WalletChallenge,
    text: str,
    fmt: SignInFormat,
    *,
    now: float,
    allowed_chain_ids: Iterable[str],
) -> SignInMessage:
    """Every check of a signed sign-in message except the signature itself.

    Order: challenge expiry; strict parse; each field equal to the issued one (domain, scheme,
    URI, version 1, chain ID, nonce, issued-at, expiry, not-before, statement, request ID,
    resources, address); chain ID allowlisted; time window against ``now``.
    """
    if now > state.expires_at:
        raise CodeExpired("the sign-in challenge has expired")
    msg = parse_sign_in_message(text, fmt)
    _check_matches_issued(state.message, msg, fmt)
    if msg.chain_id not in set(allowed_chain_ids):
        raise InvalidSignature(f"chain ID {msg.chain_id} is not allowed")
    issued = parse_timestamp(state.message.issued_at)
    check_issued_at(msg, now=now, max_age=state.expires_at - issued)
    check_validity_period(msg, now=now)
    return msg
