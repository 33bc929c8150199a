"""Turn the input forms callers send into one list of items, or say why not.

Accepted: a string, a list of strings, one list of token ids, or a list of token-id
lists (the four forms of OpenAI's `input`). Only shape is checked here; tokens are
checked against a model's vocabulary by the tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embellama.errors import EmptyInputError, InputError

__all__ = ["EmbedInput", "InputItem", "ParsedInputs", "parse_inputs"]

InputItem = str | list[int]
EmbedInput = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]

_FORMS = "a string, a list of strings, a list of token ids, or a list of token-id lists"


@dataclass(frozen=True)
class ParsedInputs:
    """The items in caller order; `single` is true when one bare item was passed."""

    items: list[InputItem]
    single: bool


def parse_inputs(value: object) -> ParsedInputs:
    if isinstance(value, str):
        return ParsedInputs([value], single=True)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, (bytes, bytearray)):
        raise InputError(f"input must be {_FORMS}, got {type(value).__name__}")
    if len(value) == 0:
        raise EmptyInputError("input must not be empty")
    if all(_is_token_id(item) for item in value):
        return ParsedInputs([[int(item) for item in value]], single=True)
    items = [_parse_item(item, index) for index, item in enumerate(value)]
    if len({isinstance(item, str) for item in items}) > 1:
        # OpenAI refuses such lists too: a caller mixing the forms has usually built the
        # list wrong, and guessing what they meant would embed the wrong thing.
        raise InputError(f"input must not mix strings and token-id lists; it must be {_FORMS}")
    return ParsedInputs(items, single=False)


def _parse_item(item: object, index: int) -> InputItem:
    if isinstance(item, str):
        return item
    if isinstance(item, np.ndarray):
        item = item.tolist()
    if isinstance(item, Sequence) and not isinstance(item, (bytes, bytearray, str)):
        tokens = list(item)
        if all(_is_token_id(token) for token in tokens):
            return [int(token) for token in tokens]
    raise InputError(
        f"input[{index}] must be a string or a list of token ids; input must be {_FORMS}",
        index=index,
    )


def _is_token_id(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
