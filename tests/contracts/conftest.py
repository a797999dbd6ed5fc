"""Fixtures of the contract suite: one app (SQLite and PostgreSQL) with real SMTP and SMS doubles,
and ``driver``, parametrized over every registered :class:`~_driver.MethodDriver`.

Driver modules are the ``drivers_*.py`` files beside this one, imported in name order; each
registers its drivers with ``@register``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "server"))

from _driver import DRIVERS, ContractContext, MethodDriver  # noqa: E402
from _server_helpers import (  # noqa: E402
    ADMIN_KEY,
    START,
    AdminApi,
    client_for,
    make_settings,
    running_app,
)
from methods._code_flows import FakeTwilio  # noqa: E402

from stepguard.core.clock import FixedClock  # noqa: E402

for _module in sorted(HERE.glob("drivers_*.py")):
    importlib.import_module(_module.stem)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def sms_double() -> Iterator[FakeTwilio]:
    twilio = FakeTwilio()
    with twilio.running():
        yield twilio


@pytest.fixture
async def contract_context(
    database_url: str,
    tmp_path: Path,
    clock: FixedClock,
    smtp_sink: Any,
    sms_double: FakeTwilio,
) -> AsyncIterator[ContractContext]:
    settings = make_settings(
        database_url,
        tmp_path / "data",
        smtp_url=smtp_sink.url,
        sms_provider=sms_double.provider_url,
    )
    async with running_app(settings, clock) as app, client_for(app) as client:
        admin = AdminApi(client, {"X-StepGuard-Admin-Key": ADMIN_KEY})
        user = await admin.user_with_session("alice@example.com", phone="+14155550100")
        yield ContractContext(app, client, clock, admin, smtp_sink, sms_double, user)


@pytest.fixture(params=sorted(DRIVERS))
async def driver(request: pytest.FixtureRequest, contract_context: ContractContext) -> MethodDriver:
    made = DRIVERS[request.param](contract_context)
    await made.setup()
    return made
