"""`GET /openapi.json`, `GET /docs` and the Swagger UI assets it loads (all public)."""

from __future__ import annotations

import mimetypes
from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from embellama.server.errors import ApiError

__all__ = ["docs", "docs_asset", "openapi"]

# Swagger UI from the `swagger-ui-py` package's bundled assets: nothing from a CDN.
SWAGGER_ASSETS = resources.files("swagger_ui") / "static"

DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>embellama API</title>
  <link rel="stylesheet" href="docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui"});
  </script>
</body>
</html>
"""


@cache
def _assets() -> dict[str, bytes]:
    """The bundle's files by name: only these are served, so no path can escape."""
    return {
        entry.name: entry.read_bytes()
        for entry in SWAGGER_ASSETS.iterdir()
        if entry.is_file() and not entry.name.endswith(".map")
    }


async def openapi(request: Request) -> Response:
    """The document the app generated from its route table (server/openapi.py)."""
    document: bytes = request.app.state.openapi
    return Response(document, media_type="application/json")


async def docs(request: Request) -> Response:
    return HTMLResponse(DOCS_PAGE)


async def docs_asset(request: Request) -> Response:
    name = request.path_params["name"]
    data = _assets().get(name)
    if data is None:
        raise ApiError(404, f"no such documentation asset: {name}", code="not_found")
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(data, media_type=media, headers={"cache-control": "max-age=86400"})
