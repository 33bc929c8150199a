"""`POST /v1/embeddings` bodies parse into typed requests; every fault names its field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from embellama import InputError, Truncation
from embellama.server.body import max_body_values, parse_json_object
from embellama.server.encoding import _piece
from embellama.server.errors import ApiError, to_api_error
from embellama.server.wire.embeddings import parse_embeddings_request
from embellama.server.wire.tokens import parse_detokenize_request, parse_tokenize_request


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


def test_tokenize_defaults_are_llama_servers() -> None:
    parsed = parse_tokenize_request({"content": "x"})
    assert (parsed.add_special, parsed.parse_special, parsed.with_pieces) == (False, True, False)
    detok = parse_detokenize_request({"tokens": [1, 2], "model": "m"}, max_tokens=2)
    assert detok.tokens.tolist() == [1, 2]


def test_a_piece_that_is_not_whole_utf8_is_a_byte_list() -> None:
    assert _piece("日".encode()) == "日"
    assert _piece("日".encode()[:2]) == [0xE6, 0x97]


def test_a_body_of_millions_of_values_is_refused_before_they_are_built() -> None:
    """16 MiB of `[],` was 5.6 M lists and 815 MB before the input count was checked."""
    many = b'{"input":[' + b",".join([b"[]"] * 2_000_000) + b"]}"
    with pytest.raises(ApiError) as refused:
        parse_json_object(many, max_body_values(2048))
    assert (refused.value.status, refused.value.code) == (400, "too_many_values")
    assert str(max_body_values(2048)) in refused.value.message


def test_the_largest_legitimate_bodies_hold_fewer_values_than_allowed() -> None:
    """2,048 rerank documents as objects with a few fields, 2,048 token-id lists."""
    fields = {"text": "a document " * 8, "id": "doc", "title": "t", "tags": ["a", "b"]}
    documents = {"query": "q", "documents": [fields] * 2048, "return_documents": True}
    ids = {"input": [list(range(60))] * 2048, "truncate": True}
    for body in (documents, ids):
        assert parse_json_object(orjson.dumps(body), max_body_values(2048)) == body


def test_too_many_inputs_is_found_before_any_input_is_parsed() -> None:
    """Counted first: the items of an oversized list are never parsed one by one."""
    with pytest.raises(ApiError) as refused:
        parse_embeddings_request({"input": [[1, "a"]] * 5}, max_inputs=4)
    assert (refused.value.param, refused.value.code) == ("input", "invalid_value")
    assert "too many inputs" in refused.value.message
    flat = parse_embeddings_request({"input": list(range(5000))}, max_inputs=4)
    assert len(flat.items) == 1  # a flat list of ids is one input, however long
