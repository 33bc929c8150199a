"""`GET /admin/models/{name}` and `POST /admin/models/{name}/weights`: a name's versions
and their weights, and changing them at run time (promotion, rollback). Admin only; the
state audits each change."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from embellama.server.admission import read_weights, state_of
from embellama.server.encoding import json_response
from embellama.server.views import versions_view
from embellama.server.wire.versions import WeightsChanged

__all__ = ["model_versions", "set_weights"]


async def model_versions(request: Request) -> Response:
    return json_response(versions_view(state_of(request), request.path_params["name"]))


async def set_weights(request: Request) -> Response:
    state = state_of(request)
    parsed = await read_weights(request, state)
    family, before, after = await state.set_weights(request.path_params["name"], parsed.weights)
    answer: WeightsChanged = {
        "status": "updated",
        "model": family,
        "weights": after,
        "previous": before,
    }
    return json_response(answer)
