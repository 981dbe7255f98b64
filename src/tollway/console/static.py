"""The console's static files (``console/static/``, package data): ``GET /ui/static/{name}``.

Pages link them as ``static('name')``: ``/ui/static/name?v=<hash of the content>``. A request
with the current hash is cached for a year (``immutable``); without it, for an hour. Every
file has an ETag; ``If-None-Match`` gets a 304. Vendored files keep their licence notes beside
them (``*.LICENSE.txt``). Nothing is fetched from elsewhere: the pages work offline.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

STATIC = Path(__file__).parent / "static"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".txt": "text/plain; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         ".ico": "image/x-icon", ".map": "application/json"}
YEAR, HOUR = 365 * 86400, 3600


@functools.cache
def _file(name: str) -> tuple[bytes, str] | None:
    """The file's bytes and content hash (read once per process: they are part of the package)."""
    if "/" in name or "\\" in name or name.startswith(".") or Path(name).suffix not in TYPES:
        return None
    path = STATIC / name
    if not path.is_file():
        return None
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:16]


def static_url(name: str) -> str:
    found = _file(name)
    return f"/ui/static/{name}?v={found[1]}" if found else f"/ui/static/{name}"


async def serve_static(request: Request) -> Response:
    name = request.path_params["name"]
    found = _file(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    data, digest = found
    etag = f'"{digest}"'
    age = f"public, max-age={YEAR}, immutable" if request.query_params.get("v") == digest else \
        f"public, max-age={HOUR}"
    headers = {"etag": etag, "cache-control": age, "x-content-type-options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=TYPES[Path(name).suffix], headers=headers)


def static_routes() -> list[Route]:
    return [Route("/ui/static/{name}", serve_static, methods=["GET"])]
