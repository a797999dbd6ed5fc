"""Delivery channels: SMTP to a real aiosmtpd server, the Twilio-shaped SMS provider against a
local HTTP server, the dev outbox (and its dev-mode-only endpoint), and what each one logs."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import pytest
from _server_helpers import ADMIN_KEY, AdminApi, client_for, make_settings, running_app
from methods._code_flows import FakeTwilio, sdk

from stepguard.core.clock import FixedClock
from stepguard.server.delivery import (
    DEV_OUTBOX_PREFIX,
    DeliveryFailed,
    DevOutbox,
    SmtpMailer,
    TwilioSmsProvider,
    mailer_from_settings,
    sms_provider_from_settings,
)
from stepguard.server.settings import Settings

NOW = 1_700_000_000.0


async def test_smtp_mailer_delivers_to_a_real_server(smtp_sink: Any) -> None:
    mailer = SmtpMailer(smtp_sink.url, "stepguard <no-reply@example.org>")
    await mailer.send_email(
        to="alice@example.com",
        subject="Your code",
        body="Your code is 123456",
        now=NOW,
        environment_id=None,
    )
    msg = smtp_sink.wait_for(lambda m: "alice@example.com" in str(m["to"]))
    assert msg["from"] == "stepguard <no-reply@example.org>"
    assert msg["subject"] == "Your code"
    assert smtp_sink.text_of(msg).strip() == "Your code is 123456"
    assert smtp_sink.recipients[-1] == ("alice@example.com",)


def test_smtp_url_forms() -> None:
    plain = SmtpMailer("smtp://user:p%40ss@mail.example.org:2525", "x@example.org")
    assert (plain.hostname, plain.port, plain.username, plain.password) == (
        "mail.example.org",
        2525,
        "user",
        "p@ss",
    )
    assert plain.use_tls is False and plain.start_tls is None
    assert SmtpMailer("smtp://h?starttls=require", "x@e.org").start_tls is True
    tls = SmtpMailer("smtps://h", "x@e.org")
    assert tls.use_tls is True and tls.port == 465
    with pytest.raises(ValueError):
        SmtpMailer("http://h", "x@e.org")


async def test_smtp_failure_is_delivery_failed_and_logs_no_address(
    smtp_sink: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = smtp_sink.url
    smtp_sink.stop()
    mailer = SmtpMailer(url, "x@example.org", timeout=2)
    with pytest.raises(DeliveryFailed) as info:
        await mailer.send_email(
            to="alice@example.com",
            subject="s",
            body="Your code is 654321",
            now=NOW,
            environment_id=None,
        )
    assert info.value.status == 502 and info.value.code == "delivery_failed"
    assert "a***e@example.com" in caplog.text
    assert "alice@example.com" not in caplog.text and "654321" not in caplog.text


async def test_twilio_provider_posts_the_messages_api_shape() -> None:
    twilio = FakeTwilio()
    with twilio.running():
        provider = TwilioSmsProvider.from_url(twilio.provider_url)
        await provider.send_sms(
            to="+14155550100", body="Your code is 111222", now=NOW, environment_id=None
        )
    (req,) = twilio.requests
    assert req["path"] == f"/2010-04-01/Accounts/{FakeTwilio.SID}/Messages.json"
    expected = base64.b64encode(f"{FakeTwilio.SID}:{FakeTwilio.TOKEN}".encode()).decode()
    assert req["authorization"] == f"Basic {expected}"
    assert req["form"] == {
        "To": "+14155550100",
        "From": "+15550001111",
        "Body": "Your code is 111222",
    }


async def test_twilio_refusal_and_unreachable_are_delivery_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    twilio = FakeTwilio(status=400)
    with twilio.running():
        provider = TwilioSmsProvider.from_url(twilio.provider_url)
        with pytest.raises(DeliveryFailed):
            await provider.send_sms(
                to="+14155550100", body="Your code is 333444", now=NOW, environment_id=None
            )
    with pytest.raises(DeliveryFailed):  # the server is gone now
        await provider.send_sms(
            to="+14155550100", body="Your code is 333444", now=NOW, environment_id=None
        )
    assert "333444" not in caplog.text and "+14155550100" not in caplog.text
    assert FakeTwilio.TOKEN not in caplog.text


def test_twilio_url_parsing() -> None:
    p = TwilioSmsProvider.from_url("twilio://ACx:tok@api.twilio.com?from=%2B15551234567")
    assert p.base_url == "https://api.twilio.com" and p.from_number == "+15551234567"
    # As written in the docs, with a bare "+": still the number's sign.
    p = TwilioSmsProvider.from_url("twilio://ACx:tok@api.twilio.com:8443?from=+15551234567")
    assert p.base_url == "https://api.twilio.com:8443" and p.from_number == "+15551234567"
    assert TwilioSmsProvider.from_url("twilio+http://A:t@127.0.0.1:9000?from=+1").base_url == (
        "http://127.0.0.1:9000"
    )
    for bad in ("twilio://ACx@h?from=+1", "twilio://ACx:tok@h", "sms://x"):
        with pytest.raises(ValueError):
            TwilioSmsProvider.from_url(bad)


def test_provider_selection() -> None:
    outbox = DevOutbox(dev_mode=False)
    assert mailer_from_settings(Settings(), outbox) is outbox
    assert isinstance(mailer_from_settings(Settings(smtp_url="smtp://h:25"), outbox), SmtpMailer)
    assert sms_provider_from_settings(Settings(), outbox) is outbox
    assert sms_provider_from_settings(Settings(sms_provider="console"), outbox) is outbox
    assert isinstance(
        sms_provider_from_settings(Settings(sms_provider="twilio://A:t@h?from=+1"), outbox),
        TwilioSmsProvider,
    )
    with pytest.raises(ValueError):
        sms_provider_from_settings(Settings(sms_provider="carrier-pigeon"), outbox)


def test_dev_mode_setting_from_the_environment() -> None:
    assert Settings.from_env({}).dev_mode is False
    assert Settings.from_env({"STEPGUARD_DEV_MODE": "1"}).dev_mode is True


async def test_outbox_outside_dev_mode_logs_no_text(caplog: pytest.LogCaptureFixture) -> None:
    outbox = DevOutbox(dev_mode=False)
    with caplog.at_level(logging.DEBUG):
        await outbox.send_email(
            to="alice@example.com",
            subject="Your code",
            body="Your code is 987654",
            now=NOW,
            environment_id="env_1",
        )
    (record,) = [r for r in caplog.records if r.name == "stepguard.delivery"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(DEV_OUTBOX_PREFIX)
    assert "987654" not in caplog.text and "alice@example.com" not in caplog.text
    assert [m.body for m in outbox.messages("env_1")] == ["Your code is 987654"]
    assert outbox.messages("env_2") == []


async def test_outbox_in_dev_mode_logs_the_message(caplog: pytest.LogCaptureFixture) -> None:
    outbox = DevOutbox(dev_mode=True, size=2)
    with caplog.at_level(logging.WARNING):
        for i in range(3):
            await outbox.send_sms(
                to="+14155550100", body=f"Your code is 00000{i}", now=NOW, environment_id=None
            )
    assert all(r.getMessage().startswith(DEV_OUTBOX_PREFIX) for r in caplog.records)
    assert "Your code is 000002" in caplog.text
    assert [m.body for m in outbox.messages()] == ["Your code is 000001", "Your code is 000002"]


@pytest.mark.parametrize("dev_mode", [False, True])
async def test_dev_outbox_endpoint_only_in_dev_mode(
    database_url: str, tmp_path: Path, dev_mode: bool, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FixedClock(NOW)
    settings = make_settings(database_url, tmp_path / "data", dev_mode=dev_mode)
    async with running_app(settings, clock) as app, client_for(app) as client:
        api = AdminApi(client, {"X-StepGuard-Admin-Key": ADMIN_KEY})
        user = await api.user_with_session("alice@example.com")
        env = user.environment_id
        r = await client.post(sdk(env, "/otp/send"), json={}, headers=user.headers)
        assert r.status_code == 200, r.text
        vid = r.json()["verification_id"]
        r = await client.get(sdk(env, "/dev/outbox"))
        if not dev_mode:
            assert r.status_code == 404
            assert f"{DEV_OUTBOX_PREFIX}: email to a***e@example.com held" in caplog.text
            return
        assert r.status_code == 200
        (message,) = r.json()["messages"]
        assert message["to"] == "alice@example.com" and message["channel"] == "email"
        assert message["code"] in message["body"] and message["code"] in caplog.text
        r = await client.post(
            sdk(env, "/otp/verify"),
            json={
                "verification_id": vid,
                "code": message["code"],
                "requested_scopes": ["wallet:export"],
            },
            headers=user.headers,
        )
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("flag", ["--demo", "--no-demo"])
def test_serve_demo_turns_dev_mode_on(monkeypatch: pytest.MonkeyPatch, flag: str) -> None:
    import uvicorn
    from click.testing import CliRunner

    from stepguard import cli

    for name in (
        "STEPGUARD_DEV_MODE",
        "STEPGUARD_DEMO",
        "STEPGUARD_PUBLIC_URL",
        "STEPGUARD_DATABASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "_run", lambda *a, **k: None)  # no database for this check
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(k))
    result = CliRunner().invoke(cli.main, ["serve", flag])
    assert result.exit_code == 0, result.output
    assert started and started[0]["factory"] is True
    import os

    assert (os.environ.get("STEPGUARD_DEV_MODE") == "1") is (flag == "--demo")
    assert Settings.from_env().dev_mode is (flag == "--demo")
