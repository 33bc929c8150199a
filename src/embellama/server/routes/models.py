"""`GET /v1/models` and `GET /v1/models/{id}`: served models and their aliases."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from embellama.server.admission import state_of
from embellama.server.encoding import json_response
from embellama.server.views import model_card, model_cards

__all__ = ["get_model", "list_models"]


async def list_models(request: Request) -> Response:
    return json_response({"object": "list", "data": model_cards(state_of(request))})


async def get_model(request: Request) -> Response:
    state = state_of(request)
    name = request.path_params["model_id"]
    service = state.resolve(name)
    await service.calibrate()  # the card shows the int8/uint8 ranges
    return json_response(model_card(service, name, int(state.started)))
