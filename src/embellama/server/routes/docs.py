"""`GET /openapi.json`, `GET /docs` and the Swagger UI assets it loads (all public)."""

from __future__ import annotations

import mimetypes
from functools import cache

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from embellama.server.errors import ApiError
from embellama.server.openapi import DOCS_PAGE, SWAGGER_ASSETS, openapi_document

__all__ = ["docs", "docs_asset", "openapi"]


@cache
def _document() -> bytes:
    return orjson.dumps(openapi_document())


@cache
def _assets() -> dict[str, bytes]:
    """The bundle's files by name: only these are served, so no path can escape."""
    return {
        entry.name: entry.read_bytes()
        for entry in SWAGGER_ASSETS.iterdir()
        if entry.is_file() and not entry.name.endswith(".map")
    }


async def openapi(request: Request) -> Response:
    return Response(_document(), media_type="application/json")


async def docs(request: Request) -> Response:
    return HTMLResponse(DOCS_PAGE)


async def docs_asset(request: Request) -> Response:
    name = request.path_params["name"]
    data = _assets().get(name)
    if data is None:
        raise ApiError(404, f"no such documentation asset: {name}", code="not_found")
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(data, media_type=media, headers={"cache-control": "max-age=86400"})
