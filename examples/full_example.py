"""Full example: the seed's "Export Wallet" screen as a synchronous program.

It checks, prompts (auto-routing MFA vs re-authentication), performs the export with the token
attached automatically, and reports cancellations and failed verifications. Run it like
``quick_start.py`` (``make run`` first)::

    STEPGUARD_SESSION=<session token> python examples/full_example.py
"""

from __future__ import annotations

import os

import stepguard
from stepguard.client import SCOPE_EXTENSION


def export_wallet(client: stepguard.Client) -> str:
    """What the screen shows after the "Export Wallet" button."""
    try:
        if client.step_up_auth.is_step_up_required("wallet:export"):
            client.step_up_auth.prompt_step_up_auth(requested_scopes=["wallet:export"])
        response = client.http.post(
            "/api/wallet/export", extensions={SCOPE_EXTENSION: "wallet:export"}
        )
        response.raise_for_status()
        return "Export completed"
    except stepguard.StepUpCancelled:
        return "Error: verification cancelled"
    except stepguard.VerificationError as exc:
        # exc.code is the server's stable code: invalid_code, rate_limited, mfa_required, ...
        return f"Error: {exc.code}: {exc}"
    except stepguard.StepUpRequired as exc:
        return f"Error: still needs step-up for {exc.scope}"
    finally:
        client.step_up_auth.reset_state()  # like leaving the screen: flow state only


def main() -> None:
    from _terminal import TerminalPrompter, settings

    url, environment, session = settings()
    with stepguard.Client(
        url,
        environment,
        session_token=session,
        prompter=TerminalPrompter(),
        api_base_url=f"{url}/demo",
    ) as client:
        if session is None:
            client.sign_in_with_email(os.environ["STEPGUARD_EMAIL"])
        print("Verifying..." if client.step_up_auth.is_step_up_required("wallet:export") else "")
        print(export_wallet(client))


if __name__ == "__main__":
    main()
