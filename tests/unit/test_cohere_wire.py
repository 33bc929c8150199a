"""Cohere's embed bodies become the pipeline's options (server/wire/cohere.py)."""

from __future__ import annotations

import pytest

from embellama.config import Truncation
from embellama.prompts import InputType
from embellama.server.errors import ApiError
from embellama.server.wire.cohere import parse_cohere_request
from embellama.vectors import Quantization


@pytest.mark.parametrize(
    ("input_type", "expected"),
    [
        ("search_document", InputType.DOCUMENT),
        ("search_query", InputType.QUERY),
        ("classification", None),
        ("clustering", None),
        (None, None),
    ],
)
def test_input_types_map_onto_the_prefix_table(
    input_type: str | None, expected: InputType | None
) -> None:
    parsed = parse_cohere_request({"texts": ["a"], "input_type": input_type}, max_inputs=8)
    assert parsed.options().input_type is expected


def test_options_and_types() -> None:
    body = {
        "texts": ["a", "b"],
        "embedding_types": ["ubinary", "float", "int8", "ubinary"],
        "truncate": "START",
        "output_dimension": 64,
    }
    parsed = parse_cohere_request(body, max_inputs=8)
    assert parsed.types == ("float", "int8", "ubinary")  # Cohere's order, once each
    options = parsed.options(use_cache=False)
    assert options.quantize == (Quantization.INT8, Quantization.UBINARY)
    assert (options.truncate, options.dimensions, options.use_cache) == (
        Truncation.START,
        64,
        False,
    )
    assert parse_cohere_request({"texts": ["a"]}, max_inputs=8).options().truncate is Truncation.END


def test_inputs_join_text_parts_and_v1_answers_by_type_only_when_asked() -> None:
    parts = [{"type": "text", "text": "title"}, {"type": "text", "text": "body"}]
    parsed = parse_cohere_request({"inputs": [{"content": parts}]}, max_inputs=8)
    assert parsed.items == ["title\nbody"] and parsed.by_type
    assert not parse_cohere_request({"texts": ["a"]}, max_inputs=8, v1=True).by_type
    typed = parse_cohere_request(
        {"texts": ["a"], "embedding_types": ["int8"]}, max_inputs=8, v1=True
    )
    assert typed.by_type


def test_too_many_texts_are_counted_before_reading_them() -> None:
    with pytest.raises(ApiError, match="too many inputs: 9") as caught:
        parse_cohere_request({"inputs": [object()] * 9}, max_inputs=8)
    assert caught.value.status == 400
