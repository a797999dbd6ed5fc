"""Hosted web UI: the dependency-free ES module (``/static/stepguard.js``), its stylesheet and the
hand-off page (``/handoff/{id}``). Everything is served from the package: no CDN, works offline.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from stepguard.core.errors import NotFound

__all__ = ["PAGE_HEADERS", "router", "static_file"]

_HERE = Path(__file__).resolve().parent
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: Pages run only our own script; inline SVG for QR codes comes in as a data: image.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # The hand-off URL's fragment carries a secret; no Referer may repeat the path either.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@cache
def static_file(name: str) -> bytes:
    """The bytes of one file under ``web/static`` (names are checked against the directory)."""
    path = _HERE / "static" / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise NotFound("no such file", resource="static")
    return path.read_bytes()


@cache
def _page(name: str) -> bytes:
    return (_HERE / "pages" / name).read_bytes()


router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/static/{name}")
async def static(name: str) -> Response:
    """The ES module and its assets. Cross-origin front ends may import them (CORS)."""
    body = static_file(name)
    return Response(
        body,
        media_type=_TYPES.get(Path(name).suffix, "application/octet-stream"),
        headers={
            "Access-Control-Allow-Origin": "*",
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/handoff/{handoff_id}")
async def handoff_page(handoff_id: str) -> Response:
    """The hand-off page; it reads its id from the path and its secret from the fragment."""
    return Response(_page("handoff.html"), media_type=_TYPES[".html"], headers=PAGE_HEADERS)
