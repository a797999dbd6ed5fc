"""The demo wallet app, mounted at ``/demo/`` by ``stepguard serve --demo``.

A small FastAPI app protected by :mod:`stepguard.guard` exactly as a real backend would be, except
that it runs in the server's process: the guard reads the keyring directly (:class:`LocalKeys`, no
HTTP to itself), matches ``sub`` against the stepguard session of the request and keeps its
single-use bookkeeping in the server's own database.
"""

from __future__ import annotations

from ._app import build_demo_app, mount_demo

__all__ = ["build_demo_app", "mount_demo"]
