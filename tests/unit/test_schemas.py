"""`POST /v1/embeddings` bodies parse into typed requests; every fault names its field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from embellama import InputError, Truncation
from embellama.options import RerankOptions
from embellama.prompts import InputType
from embellama.server.body import max_body_values, parse_json_object
from embellama.server.encoding import _piece
from embellama.server.errors import ApiError, to_api_error
from embellama.server.wire.admin import parse_clear_cache_request
from embellama.server.wire.embeddings import parse_embeddings_request
from embellama.server.wire.rerank import parse_rerank_request
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


def _fault(body: dict[str, Any]) -> tuple[int, str | None, str | None, str]:
    with pytest.raises(ApiError) as caught:
        parse_embeddings_request(body, max_inputs=4, max_instruction_length=8)
    error = caught.value
    return error.status, error.param, error.code, error.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        # Fields are checked in the hand parser's order: input, model, encoding_format,
        # dimensions, user, truncate, normalize, cache, input_type, instruction, ...
        ({"input": "a", "pooling": "x", "model": 3, "user": 1}, "model"),
        ({"input": "a", "truncate": "middle", "dimensions": 0}, "dimensions"),
        ({"input": "a", "chunk_overlap": -1, "instruction": 5, "cache": 1}, "cache"),
        ({"input": "a", "pooling": "x", "instruction": "x" * 9}, "instruction"),
        ({"input": [[1, "a"]] * 5, "model": 3}, "input"),
    ],
)
def test_the_first_fault_in_field_order_answers(body: dict[str, Any], param: str) -> None:
    assert _fault(body)[1] == param


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dimensions", True, "'dimensions' must be a positive integer, got True"),
        ("dimensions", 8.0, "'dimensions' must be a positive integer, got 8.0"),
        ("dimensions", "8", "'dimensions' must be a positive integer, got '8'"),
        ("dimensions", [8], "'dimensions' must be a positive integer, got [8]"),
        ("dimensions", 0, "'dimensions' must be a positive integer, got 0"),
        ("normalize", 1, "'normalize' must be true or false, got 1"),
        ("cache", "false", "'cache' must be true or false, got 'false'"),
        ("chunk_overlap", True, "'chunk_overlap' must be an integer >= 0, got True"),
        ("chunk_overlap", 1.5, "'chunk_overlap' must be an integer >= 0, got 1.5"),
        ("model", ["m"], "'model' must be a string"),
        ("user", {"id": 1}, "'user' must be a string"),
        (
            "encoding_format",
            "FLOAT",
            "'encoding_format' must be 'float', 'base64', 'int8', 'uint8', 'binary' or 'ubinary', got 'FLOAT'",
        ),
        ("truncate", 1, "'truncate' must be false, true, 'end', 'start' or 'chunk', got 1"),
        ("pooling", "NONE", "'pooling' can only be 'none' (vectors per token), got 'NONE'"),
        (
            "instruction",
            "123456789",
            "'instruction' has 9 characters; this server accepts at most 8",
        ),
    ],
)
def test_strict_types_refuse_with_todays_messages(field: str, value: object, message: str) -> None:
    """Bools are not ints, floats and strings are not ints or bools: as the hand parser."""
    assert _fault({"input": "a", field: value}) == (400, field, "invalid_value", message)


def test_a_missing_input_and_a_null_input_are_different_faults() -> None:
    missing = "'input' is a required property"
    assert _fault({"model": "m"}) == (400, "input", "missing_required_parameter", missing)
    with pytest.raises(InputError, match="got NoneType"):
        parse_embeddings_request({"input": None}, max_inputs=4)


def test_null_and_falsy_values_mean_the_defaults() -> None:
    nulls = dict.fromkeys(
        ["model", "dimensions", "user", "truncate", "normalize", "cache", "input_type"], None
    )
    parsed = parse_embeddings_request(
        {"input": "a", **nulls, "instruction": None, "chunk_overlap": None, "pooling": None},
        max_inputs=4,
    )
    assert (parsed.model, parsed.dimensions, parsed.truncate) == (None, None, Truncation.NONE)
    assert (parsed.per_token, parsed.options().use_cache, parsed.options().chunk_overlap) == (
        False,
        True,
        0,
    )
    falsy: object
    for falsy in (None, "", 0, False, []):
        body: dict[str, object] = {"input": "a", "encoding_format": falsy}
        assert parse_embeddings_request(body, max_inputs=4).encoding_format == "float"


def test_extra_fields_are_ignored_however_deep() -> None:
    body = {"input": "a", "user": "u", "foo": {"deep": [1, None]}, "extra_body": None}
    assert parse_embeddings_request(body, max_inputs=4).items == ["a"]


def test_a_field_given_twice_counts_once_with_its_last_value() -> None:
    """orjson keeps the last value of a repeated key; the parser sees only that one."""
    last_good = parse_json_object(b'{"input": "a", "dimensions": "x", "dimensions": 8}')
    assert parse_embeddings_request(last_good, max_inputs=4).dimensions == 8
    last_bad = parse_json_object(b'{"input": "a", "dimensions": 8, "dimensions": "x"}')
    assert _fault(last_bad)[1] == "dimensions"


@pytest.mark.parametrize("body", [b"[1]", b'"input"', b"null", b"3"])
def test_a_body_that_is_not_an_object_is_refused(body: bytes) -> None:
    with pytest.raises(ApiError, match="must be a JSON object"):
        parse_json_object(body)


def test_the_request_carries_its_options() -> None:
    parsed = parse_embeddings_request(
        {
            "input": "q",
            "dimensions": 8,
            "truncate": "chunk",
            "chunk_overlap": 2,
            "input_type": "search_query",
            "instruction": "find",
            "normalize": False,
        },
        max_inputs=4,
        max_instruction_length=8,
    )
    options = parsed.options(use_cache=False)
    assert (options.dimensions, options.truncate, options.chunk_overlap) == (8, Truncation.CHUNK, 2)
    assert (options.input_type, options.instruction) == (InputType.QUERY, "find")
    assert (options.normalize, options.use_cache) == (False, False)
    assert (
        parse_embeddings_request({"input": "q", "cache": False}, max_inputs=4).options().use_cache
        is False
    )


def test_an_option_conflict_is_found_when_the_options_are_built() -> None:
    """After the model is resolved (an unknown model is a 404 first), as before."""
    parsed = parse_embeddings_request({"input": "q", "instruction": "find"}, max_inputs=4)
    with pytest.raises(InputError) as caught:
        parsed.options()
    assert caught.value.param == "instruction"


def _rerank_fault(body: dict[str, Any], most: int = 3) -> tuple[int, str | None, str | None, str]:
    with pytest.raises(ApiError) as caught:
        parse_rerank_request(body, max_documents=most)
    error = caught.value
    return error.status, error.param, error.code, error.message


def test_rerank_faults_name_the_key_the_body_used() -> None:
    not_list = "must be a non-empty list of strings or of objects with 'text'"
    assert _rerank_fault({"query": "q"}) == (
        400,
        "documents",
        "missing_required_parameter",
        f"'documents' {not_list}",
    )
    assert _rerank_fault({"query": "q", "texts": []})[1:3] == ("texts", "invalid_value")
    assert _rerank_fault({"query": "q", "texts": None})[1:] == (
        "texts",
        "missing_required_parameter",
        f"'texts' {not_list}",
    )
    # `documents` present (even null) wins over `texts`.
    assert _rerank_fault({"query": "q", "documents": None, "texts": ["a"]})[1] == "documents"
    assert _rerank_fault({"query": "q", "texts": ["a", {"text": 1}]})[1:3] == (
        "texts[1]",
        "invalid_value",
    )
    parsed = parse_rerank_request({"query": "q", "texts": ["a", {"text": "b"}]}, max_documents=3)
    assert parsed.documents == ["a", "b"]


def test_rerank_query_faults_and_their_codes() -> None:
    text = "'query' is a required property and must be a string"
    missing = (400, "query", "missing_required_parameter", text)
    assert _rerank_fault({"documents": ["a"]}) == missing
    assert _rerank_fault({"query": None, "documents": ["a"]}) == missing
    assert _rerank_fault({"query": 1, "documents": ["a"]}) == (400, "query", "invalid_value", text)


def test_too_many_documents_is_found_before_any_document_is_read() -> None:
    status, param, _, message = _rerank_fault({"query": "q", "documents": [{"x": 1}] * 4})
    assert (status, param) == (400, "documents") and message.startswith("too many documents: 4")


def test_rerank_options_and_flags() -> None:
    parsed = parse_rerank_request(
        {"query": "q", "documents": ["a"], "top_n": 1, "truncate": False, "raw_scores": None},
        max_documents=3,
    )
    assert parsed.options() == RerankOptions(top_n=1, truncate=Truncation.NONE)
    assert (parsed.raw_scores, parsed.return_documents) == (False, False)
    assert _rerank_fault({"query": "q", "documents": ["a"], "top_n": True})[1] == "top_n"
    assert _rerank_fault({"query": "q", "documents": ["a"], "truncate": "start"})[1] == "truncate"


def test_token_request_faults() -> None:
    with pytest.raises(ApiError) as caught:
        parse_tokenize_request({})
    assert (caught.value.param, caught.value.code) == ("content", "invalid_value")
    assert parse_tokenize_request({"content": "x", "parse_special": None}).parse_special is True
    with pytest.raises(ApiError, match="'add_special' must be true or false, got 1"):
        parse_tokenize_request({"content": "x", "add_special": 1})
    with pytest.raises(ApiError) as caught:
        parse_detokenize_request({"tokens": [1, 2, 3]}, max_tokens=2)
    assert (caught.value.status, caught.value.code) == (413, "too_many_tokens")
    for tokens in ([1, True], None, "1", [1.0]):
        with pytest.raises(ApiError) as caught:
            parse_detokenize_request({"tokens": tokens}, max_tokens=2)
        assert (caught.value.status, caught.value.param) == (400, "tokens")


@pytest.mark.parametrize("body", [{"model": 1}, {"model": "m", "all": True}, {"x": None}])
def test_a_cache_clear_body_is_empty_or_one_model(body: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as caught:
        parse_clear_cache_request(body)
    error = caught.value
    assert (error.status, error.param, error.code) == (400, "model", None)
    assert error.message == 'the body must be empty or {"model": "<name>"}'
    assert parse_clear_cache_request({"model": None}).model is None
