"""`/admin/models/{name}` and `/admin/models/{name}/weights`: a versioned name's weights,
the body that changes them, and the answers. The registry checks the versions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, model_validator
from typing_extensions import TypedDict

from embellama.server.wire.base import WireModel, parse, refuse

__all__ = [
    "ModelVersion",
    "ModelVersions",
    "WeightsChanged",
    "WeightsRequest",
    "parse_weights_request",
]

_SHAPE = 'the body must be an object of version weights, e.g. {"v1": 90, "v2": 10}'


class WeightsRequest(WireModel):
    """`{"v1": 90, "v2": 10}`: each version's share, relative; a version left out gets
    0 (promotion: `{"v2": 100}`); known versions only, numbers >= 0, sum above 0."""

    model_config = ConfigDict(extra="allow", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _numbers(cls, fields: Any) -> Any:
        if not isinstance(fields, Mapping) or not fields:
            raise refuse(_SHAPE, param="weights")
        for version, weight in fields.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise refuse(
                    f"the weight of version {version!r} must be a number >= 0, got {weight!r}",
                    param=f"weights.{version}",
                )
        return fields

    @property
    def weights(self) -> dict[str, float]:
        return {str(k): float(v) for k, v in (self.model_extra or {}).items()}


def parse_weights_request(body: Mapping[str, Any]) -> WeightsRequest:
    return parse(WeightsRequest, body)


class ModelVersion(TypedDict):
    version: str
    name: str  # "name@version": pins it
    weight: float
    path: str
    fingerprint: str
    cache_tag: str
    kind: str
    loaded_by: Literal["config", "admin"]


class ModelVersions(TypedDict):
    model: str
    aliases: list[str]
    versioned: bool  # False: a model with one version, served under its plain name
    versions: list[ModelVersion]


class WeightsChanged(TypedDict):
    status: Literal["updated"]
    model: str
    weights: dict[str, float]
    previous: dict[str, float]
