"""The web console's files under ``/ui/`` (README, "Web console"), on the listener.

The console is static HTML, CSS and ES modules shipped in the package (``rps_service/ui``;
no build step, nothing from the internet). The files are read once when the application is
made and served from memory: only names found in the package can be asked for, so no
request path ever reaches the file system. They are served without the token (they hold no
data); every API call the page makes carries it. A strict Content-Security-Policy keeps
anything but the package's own scripts from running, should a device name hold markup.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

UI_DIR = Path(__file__).parents[1] / "ui"  # rps_service/ui

#: Route names the token middleware lets through: the static files, never an API route.
PUBLIC_ROUTES = frozenset({"ui", "ui-redirect"})

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",  # ES modules need a JavaScript type
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time (answered 304 when unchanged): after an upgrade the page and
    # its modules must not mix two versions.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: str
    etag: str


def _load(folder: Path) -> dict[str, _File]:
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in _TYPES:
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            files[path.relative_to(folder).as_posix()] = _File(body, _TYPES[path.suffix], etag)
    return files


_FILES = web.AppKey("console_files", dict[str, _File])


async def _serve(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"] or "index.html"
    found = request.app[_FILES].get(name)
    if found is None:
        raise web.HTTPNotFound(reason="no such file in the console")
    headers = {**_HEADERS, "ETag": found.etag}
    if request.headers.get("If-None-Match") == found.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, headers={**headers,
                                                  "Content-Type": found.content_type})


async def _redirect(request: web.Request) -> web.StreamResponse:
    # Relative links in the page (style.css, app.js) need the trailing slash.
    raise web.HTTPMovedPermanently(location="ui/")


def add_routes(app: web.Application, folder: Path = UI_DIR) -> None:
    """``/ui/`` (the console) on the event API's application."""
    app[_FILES] = _load(folder)
    app.router.add_get("/ui", _redirect, name="ui-redirect")
    app.router.add_get("/ui/{name:.*}", _serve, name="ui")
