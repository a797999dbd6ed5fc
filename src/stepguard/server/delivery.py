"""Getting one-time codes to people: email over SMTP, SMS through a provider, or the dev outbox.

* :class:`SmtpMailer` sends through ``STEPGUARD_SMTP_URL`` with aiosmtplib
  (``smtp://[user:pass@]host:port`` with opportunistic STARTTLS, ``smtp://…?starttls=require`` to
  insist on it, ``smtps://`` for implicit TLS).
* :class:`TwilioSmsProvider` speaks Twilio's Messages API shape (a form POST to
  ``{base}/2010-04-01/Accounts/{sid}/Messages.json`` with basic auth); configured as
  ``STEPGUARD_SMS_PROVIDER=twilio://SID:TOKEN@host[:port]?from=+1555…`` (HTTPS) or
  ``twilio+http://…`` (plain HTTP, for a local test double).
* :class:`DevOutbox` stands in for whatever is not configured (``console`` for SMS). It keeps the
  last messages in memory; the message text (which holds the code) reaches the server log and the
  ``GET /sdk/{env}/dev/outbox`` endpoint **only in dev mode** (``STEPGUARD_DEV_MODE=1``,
  ``stepguard serve --demo``). Outside dev mode the log line says a message was held, without its
  text: a code must never reach a production log (ASVS 16.2.5).

Neither channel ever logs message bodies; failures are reported as :class:`DeliveryFailed` with the
masked destination only.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import httpx

from stepguard.core.errors import DeliveryFailed
from stepguard.core.methods.otp import mask_email, mask_phone
from stepguard.server.service import StepGuardService
from stepguard.server.settings import Settings

__all__ = [
    "DEV_OUTBOX_PREFIX",
    "Delivery",
    "DeliveryFailed",
    "DevOutbox",
    "Mailer",
    "OutboxMessage",
    "SmsProvider",
    "SmtpMailer",
    "TwilioSmsProvider",
    "delivery_for",
    "mailer_from_settings",
    "sms_provider_from_settings",
]

log = logging.getLogger("stepguard.delivery")

#: Every dev-outbox log line starts with this, so nobody mistakes it for real delivery.
DEV_OUTBOX_PREFIX = "dev outbox"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message held by the dev outbox."""

    channel: str  # "email" | "sms"
    to: str
    subject: str
    body: str
    sent_at: float
    environment_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "to": self.to,
            "subject": self.subject,
            "body": self.body,
            "sent_at": self.sent_at,
            "environment_id": self.environment_id,
        }


class Mailer(Protocol):
    """Sends one plain-text email."""

    async def send_email(
        self, *, to: str, subject: str, body: str, now: float, environment_id: str | None
    ) -> None: ...


class SmsProvider(Protocol):
    """Sends one SMS to an E.164 number."""

    async def send_sms(
        self, *, to: str, body: str, now: float, environment_id: str | None
    ) -> None: ...


class DevOutbox:
    """Mailer and SMS provider for development: holds the last ``size`` messages in memory.

    In dev mode the text is logged at WARNING under :data:`DEV_OUTBOX_PREFIX` and can be read back
    (:meth:`messages`); otherwise only the fact that a message was held is logged.
    """

    def __init__(self, *, dev_mode: bool, size: int = 50) -> None:
        self.dev_mode = dev_mode
        self._messages: deque[OutboxMessage] = deque(maxlen=size)

    def _hold(self, message: OutboxMessage) -> None:
        self._messages.append(message)
        masked = mask_email(message.to) if message.channel == "email" else mask_phone(message.to)
        if self.dev_mode:
            log.warning(
                "%s: %s to %s: %s | %s",
                DEV_OUTBOX_PREFIX,
                message.channel,
                message.to,
                message.subject,
                message.body,
            )
        else:
            log.warning(
                "%s: %s to %s held, not delivered (configure %s, or enable dev mode to read it)",
                DEV_OUTBOX_PREFIX,
                message.channel,
                masked,
                "STEPGUARD_SMTP_URL" if message.channel == "email" else "STEPGUARD_SMS_PROVIDER",
            )

    async def send_email(
        self, *, to: str, subject: str, body: str, now: float, environment_id: str | None
    ) -> None:
        self._hold(OutboxMessage("email", to, subject, body, now, environment_id))

    async def send_sms(self, *, to: str, body: str, now: float, environment_id: str | None) -> None:
        self._hold(OutboxMessage("sms", to, "", body, now, environment_id))

    def messages(self, environment_id: str | None = None) -> list[OutboxMessage]:
        """Held messages, newest last (only those of ``environment_id`` when given)."""
        return [
            m
            for m in self._messages
            if environment_id is None or m.environment_id in (None, environment_id)
        ]


class SmtpMailer:
    """Sends through an SMTP server given as a URL (see the module docstring)."""

    def __init__(self, url: str, sender: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError("STEPGUARD_SMTP_URL must look like smtp://host:port or smtps://…")
        query = parse_qs(parts.query)
        self.hostname = parts.hostname
        self.use_tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.use_tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        require = query.get("starttls", [""])[0].lower() in {"1", "true", "require", "yes"}
        # None = use STARTTLS when offered; True = refuse to send in the clear.
        self.start_tls: bool | None = None if self.use_tls else (True if require else None)
        self.sender = sender
        self.timeout = timeout

    async def send_email(
        self, *, to: str, subject: str, body: str, now: float, environment_id: str | None
    ) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        try:
            await aiosmtplib.send(
                message,
                hostname=self.hostname,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            # The exception text can quote the server's reply, never our message body.
            log.error("email to %s failed: %s", mask_email(to), type(exc).__name__)
            raise DeliveryFailed() from None


class TwilioSmsProvider:
    """Twilio's Messages API (or anything that speaks its request shape)."""

    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        from_number: str,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.account_sid = account_sid
        self._auth = (account_sid, auth_token)
        self.from_number = from_number
        self.timeout = timeout

    @classmethod
    def from_url(cls, url: str) -> TwilioSmsProvider:
        """``twilio://SID:TOKEN@host[:port]?from=+1555…`` (``twilio+http://`` for plain HTTP)."""
        parts = urlsplit(url)
        if parts.scheme not in {"twilio", "twilio+http"}:
            raise ValueError("not a twilio:// URL")
        # A literal "+" in ``from=+1555…`` is the number's sign, not an encoded space.
        sender = parse_qs(parts.query.replace("+", "%2B")).get("from", [""])[0]
        if not (parts.username and parts.password and parts.hostname and sender):
            raise ValueError("STEPGUARD_SMS_PROVIDER needs twilio://SID:TOKEN@host?from=+1…")
        scheme = "http" if parts.scheme == "twilio+http" else "https"
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        return cls(
            base_url=f"{scheme}://{netloc}",
            account_sid=unquote(parts.username),
            auth_token=unquote(parts.password),
            from_number=sender,
        )

    async def send_sms(self, *, to: str, body: str, now: float, environment_id: str | None) -> None:
        url = f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(
                    url, data={"To": to, "From": self.from_number, "Body": body}, auth=self._auth
                )
        except httpx.HTTPError as exc:
            log.error("sms to %s failed: %s", mask_phone(to), type(exc).__name__)
            raise DeliveryFailed() from None
        if response.status_code >= 300:
            log.error("sms to %s refused: HTTP %s", mask_phone(to), response.status_code)
            raise DeliveryFailed()


def mailer_from_settings(settings: Settings, outbox: DevOutbox) -> Mailer:
    """SMTP when ``smtp_url`` is set, else the dev outbox."""
    if settings.smtp_url:
        return SmtpMailer(settings.smtp_url, settings.smtp_from)
    return outbox


def sms_provider_from_settings(settings: Settings, outbox: DevOutbox) -> SmsProvider:
    """``twilio://…`` or ``twilio+http://…``; ``console`` (or nothing) is the dev outbox."""
    spec = (settings.sms_provider or "console").strip()
    if spec == "console":
        return outbox
    if spec.startswith(("twilio://", "twilio+http://")):
        return TwilioSmsProvider.from_url(spec)
    raise ValueError("STEPGUARD_SMS_PROVIDER must be 'console' or a twilio:// URL")


@dataclass(slots=True)
class Delivery:
    """The channels of one server: mailer, SMS provider and the dev outbox behind them."""

    mailer: Mailer
    sms: SmsProvider
    outbox: DevOutbox
    dev_mode: bool

    async def send(
        self,
        channel: str,
        *,
        to: str,
        subject: str,
        body: str,
        now: float,
        environment_id: str | None,
    ) -> None:
        """Send on ``channel`` ("email" or "sms")."""
        if channel == "email":
            await self.mailer.send_email(
                to=to, subject=subject, body=body, now=now, environment_id=environment_id
            )
        else:
            await self.sms.send_sms(to=to, body=body, now=now, environment_id=environment_id)


_DELIVERY: weakref.WeakKeyDictionary[StepGuardService, Delivery] = weakref.WeakKeyDictionary()


def delivery_for(service: StepGuardService) -> Delivery:
    """The service's :class:`Delivery`, built from its settings on first use."""
    found = _DELIVERY.get(service)
    if found is None:
        dev_mode = service.settings.dev_mode
        outbox = DevOutbox(dev_mode=dev_mode)
        found = Delivery(
            mailer=mailer_from_settings(service.settings, outbox),
            sms=sms_provider_from_settings(service.settings, outbox),
            outbox=outbox,
            dev_mode=dev_mode,
        )
        _DELIVERY[service] = found
    return found
