"""URLconf for the Django adapter test (``ROOT_URLCONF``): views protected by the decorator."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from django.urls import path

from stepguard.guard.django import require_step_up


@require_step_up("user:update")
def profile(request: Any) -> HttpResponse:
    return HttpResponse(
        json.dumps({"sub": request.elevation.subject}), content_type="application/json"
    )


@require_step_up("wallet:export")
def export(request: Any) -> HttpResponse:
    return HttpResponse(b'{"ok": true}', content_type="application/json")


@require_step_up("wallet:export")
def export_fails(request: Any) -> HttpResponse:
    raise RuntimeError("backend down")


urlpatterns = [
    path("profile", profile),
    path("export", export),
    path("export-fails", export_fails),
]
