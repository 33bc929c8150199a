"""The four OpenAI input forms parse; anything else is a clear InputError."""

from __future__ import annotations

import numpy as np
import pytest

from embellama import EmptyInputError, InputError
from embellama.inputs import parse_inputs


def _ids(item: object) -> object:
    return item.tolist() if isinstance(item, np.ndarray) else item


def test_forms() -> None:
    assert parse_inputs("hi").items == ["hi"]
    assert parse_inputs("hi").single
    assert parse_inputs(["a", "b"]).items == ["a", "b"]
    assert not parse_inputs(["a"]).single
    assert [_ids(i) for i in parse_inputs([1, 2, 3]).items] == [[1, 2, 3]]
    assert parse_inputs([1, 2, 3]).single
    assert [_ids(i) for i in parse_inputs([[1], [2, 3]]).items] == [[1], [2, 3]]
    assert [_ids(i) for i in parse_inputs(np.array([[1, 2]])).items] == [[1, 2]]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "got NoneType"),
        (b"bytes", "got bytes"),
        (["a", 1], r"input\[1\]"),
        ([["a"]], r"input\[0\]"),
        ([True, False], r"input\[0\]"),
        ({"a": 1}, "got dict"),
        ([[1, 2], "a"], "must not mix strings and token-id lists"),
        (["a", [1, 2]], "must not mix"),
    ],
)
def test_bad_forms(value: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_inputs(value)


def test_empty_list() -> None:
    with pytest.raises(EmptyInputError, match="must not be empty"):
        parse_inputs([])
