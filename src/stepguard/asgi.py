"""What ``stepguard serve`` runs in each worker: the server, plus the demo app when enabled."""

from __future__ import annotations

import os

from fastapi import FastAPI

from stepguard.server.app import create_app
from stepguard.server.settings import Settings


def app_from_env() -> FastAPI:
    """The server configured from ``STEPGUARD_*``; with ``STEPGUARD_DEMO=1`` the demo is mounted."""
    settings = Settings.from_env(config_file=os.environ.get("STEPGUARD_CONFIG") or None)
    app = create_app(settings)
    if os.environ.get("STEPGUARD_DEMO") == "1":
        from stepguard.demo import mount_demo

        mount_demo(app)
    return app
