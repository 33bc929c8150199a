"""TEI's /tokenize aligns offsets in Python over the folded text: the characters one
request may hold are bounded in its declaration, before any alignment, and the refusal
is TEI's 413. (The route's e2e faults run on a server whose body limit is below this.)"""

from __future__ import annotations

import orjson
import pytest

from embellama.model.offsets import MAX_ALIGNED_CHARACTERS
from embellama.server.errors import ApiError, ErrorShape, error_response
from embellama.server.wire.tei import parse_tei_tokenize


def test_more_characters_than_the_alignment_bound_is_teis_413() -> None:
    # One token, but NFKD makes 18 characters of each: 300 KB took +148 MB unbounded.
    body = {"inputs": ["a", "\ufdfa" * MAX_ALIGNED_CHARACTERS]}
    with pytest.raises(ApiError) as refused:
        parse_tei_tokenize(body, max_inputs=8)
    response = error_response(refused.value, ErrorShape.TEI)
    assert response.status_code == 413
    answer = orjson.loads(bytes(response.body))
    assert answer["error_type"] == "Validation"
    assert f"at most {MAX_ALIGNED_CHARACTERS}" in answer["error"]


def test_the_bound_itself_is_accepted() -> None:
    body = {"inputs": ["a" * (MAX_ALIGNED_CHARACTERS // 2)] * 2}
    assert len(parse_tei_tokenize(body, max_inputs=8).texts) == 2
