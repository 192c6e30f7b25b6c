"""The pages a browser opens: the playground (``GET /``) and the API docs (``/docs``), offline.

Everything is served from the package: the playground's HTML/CSS/JS from ``runtime/static/``, the
Swagger UI bundle from the ``fastapi-offline`` wheel (FastAPI's own docs pages load it from a CDN: a blank
page without internet). There is no ``/redoc``: ReDoc's bundle fetches its logo from cdn.redoc.ly.
No page has an inline script, so each carries a strict Content-Security-Policy. Every URL in the pages
is relative, so they work under a path prefix (an API Gateway stage) as well as at the root. The pages
and assets are open (``_auth.OPEN_PATHS``, ``OPEN_PREFIXES``); the API calls the playground makes need a
key like any other.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from ._errors import NotFound

STATIC = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/"
DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*\.(html|css|js|png|svg|txt)$")

# The playground: its own script and styles only; images from data:/blob: URLs (previews, overlays).
PLAYGROUND_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Swagger UI sets inline styles (React) and draws icons from data: URLs.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def docs_assets_dir() -> Path | None:
    """Where the ``fastapi-offline`` wheel keeps Swagger UI, or None when it is not installed."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if all((folder / name).is_file() for name in DOCS_ASSETS) else None


@functools.lru_cache(maxsize=64)
def _read(path: Path) -> bytes:
    return path.read_bytes()


def install_pages(app: Any) -> None:
    """Add ``/``, ``/docs`` and ``/static/…`` to ``app`` (created with ``docs_url=None``)."""

    def page(name: str, csp: str) -> Response:
        headers = {**_COMMON, "content-security-policy": csp, "cache-control": "no-cache"}
        html = _read(STATIC / name)
        if app.state.settings.api_key_hashes:  # the page asks for a key before its first API call
            html = html.replace(b'data-auth="open"', b'data-auth="key"', 1)
        return Response(html, media_type=_TYPES[".html"], headers=headers)

    def asset(path: Path, request: Request) -> Response:
        if not path.is_file():
            raise NotFound(f"no static file {request.url.path}")
        headers = {**_COMMON, "cache-control": "public, max-age=3600"}
        media = _TYPES[path.suffix]
        return Response(_read(path), media_type=media.split(";")[0], headers=headers)

    @app.get("/", include_in_schema=False)
    async def playground() -> Response:
        return page("playground.html", PLAYGROUND_CSP)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> Response:
        return page("docs.html" if docs_assets_dir() else "docs-missing.html", DOCS_CSP)

    @app.get(STATIC_PREFIX + "docs/{name}", include_in_schema=False)
    async def docs_asset(name: str, request: Request) -> Response:
        folder = docs_assets_dir()
        if folder is None or name not in DOCS_ASSETS:
            raise NotFound(f"no docs asset {name!r}")
        return asset(folder / name, request)

    @app.get(STATIC_PREFIX + "{name}", include_in_schema=False)
    async def static(name: str, request: Request) -> Response:
        if not _NAME.match(name):
            raise NotFound(f"no static file {request.url.path}")
        return asset(STATIC / name, request)
