"""`GET /admin/models/{name}` and `POST /admin/models/{name}/weights`: a name's versions
and their weights, and changing them at run time (promotion, rollback). Admin only; the
state audits each change."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from embellama.server.admission import state_of
from embellama.server.body import parse_json_object, read_body
from embellama.server.encoding import json_response
from embellama.server.views import versions_view
from embellama.server.wire.versions import WeightsChanged, parse_weights_request

__all__ = ["model_versions", "set_weights"]


async def model_versions(request: Request) -> Response:
    return json_response(versions_view(state_of(request), request.path_params["name"]))


async def set_weights(request: Request) -> Response:
    state = state_of(request)
    body = await read_body(request, state.limits.max_body_bytes)
    parsed = parse_weights_request(parse_json_object(body))
    family, before, after = state.set_weights(request.path_params["name"], parsed.weights)
    answer: WeightsChanged = {
        "status": "updated",
        "model": family,
        "weights": after,
        "previous": before,
    }
    return json_response(answer)
