"""`POST /v1/embeddings` bodies parse into typed requests; every fault names its field."""

from __future__ import annotations

from typing import Any

import pytest

from embellama import InputError, Truncation
from embellama.server.errors import ApiError, to_api_error
from embellama.server.schemas import parse_embeddings_request


def test_a_full_request() -> None:
    parsed = parse_embeddings_request(
        {
            "input": ["a", "b"],
            "model": "m",
            "encoding_format": "base64",
            "dimensions": 64,
            "truncate": "start",
            "normalize": False,
            "user": "u",
        },
        max_inputs=4,
    )
    assert parsed.items == ["a", "b"]
    assert (parsed.model, parsed.encoding_format, parsed.dimensions) == ("m", "base64", 64)
    assert (parsed.truncate, parsed.normalize) == (Truncation.START, False)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": ["a"] * 5}, "input"),
        ({"input": "a", "model": 3}, "model"),
        ({"input": "a", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "a", "dimensions": True}, "dimensions"),
        ({"input": "a", "truncate": "middle"}, "truncate"),
        ({"input": "a", "normalize": "yes"}, "normalize"),
        ({"input": "a", "user": 1}, "user"),
    ],
)
def test_faults_name_their_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_embeddings_request(body, max_inputs=4)
    assert caught.value.status == 400 and caught.value.param == param


def test_mixed_input_list_is_a_400_on_input() -> None:
    with pytest.raises(InputError) as caught:
        parse_embeddings_request({"input": [[1, 2], "a"]}, max_inputs=4)
    api = to_api_error(caught.value)
    assert (api.status, api.param, api.code) == (400, "input", "invalid_input")
