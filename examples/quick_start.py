"""Quick start: check → verify → proceed (the seed's Flutter quick start, in Python).

With ``make run`` serving stepguard and its demo wallet on 127.0.0.1:8000::

    STEPGUARD_SESSION=<session token> python examples/quick_start.py
    # or sign in by email code instead: STEPGUARD_EMAIL=alice@example.com python ...
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import stepguard
from stepguard.client import SCOPE_EXTENSION


async def export_private_key(client: stepguard.AsyncClient) -> dict[str, Any]:
    step_up = client.step_up_auth
    # 1. Check if step-up is required (answered locally when a valid token is held).
    if await step_up.is_step_up_required("wallet:export"):
        # 2. Prompt the user: MFA users get MFA, everyone else re-authenticates.
        await step_up.prompt_step_up_auth(requested_scopes=["wallet:export"])
    # 3. Proceed: the elevated token is attached automatically.
    response = await client.http.post(
        "/api/wallet/export", extensions={SCOPE_EXTENSION: "wallet:export"}
    )
    response.raise_for_status()
    return dict(response.json())


async def main() -> None:
    from _terminal import TerminalPrompter, settings

    url, environment, session = settings()
    async with stepguard.AsyncClient(
        url,
        environment,
        session_token=session,
        prompter=TerminalPrompter(),
        api_base_url=f"{url}/demo",
    ) as client:
        if session is None:
            await client.sign_in_with_email(os.environ["STEPGUARD_EMAIL"])
        exported = await export_private_key(client)
        print(f"Exported the key of {exported['address']}")


if __name__ == "__main__":
    asyncio.run(main())
