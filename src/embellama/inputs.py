"""Turn the input forms callers send into one list of items, or say why not.

Accepted: a string, a list of strings, one list of token ids, or a list of token-id
lists (the four forms of OpenAI's `input`). Only shape is checked here; tokens are
checked against a model's vocabulary by the tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from embellama.errors import EmptyInputError, InputError

__all__ = [
    "EmbedInput",
    "InputItem",
    "ParsedInputs",
    "TokenArray",
    "is_token_list",
    "parse_inputs",
    "token_array",
]

# Token ids as given, before the vocabulary check: int64, so an id past int32 is refused
# by the tokenizer instead of wrapping around.
TokenArray = npt.NDArray[np.int64]
InputItem = str | TokenArray
EmbedInput = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]

_INT64_MAX = np.iinfo(np.int64).max
_FORMS = "a string, a list of strings, a list of token ids, or a list of token-id lists"


@dataclass(frozen=True)
class ParsedInputs:
    """The items in caller order; `single` is true when one bare item was passed."""

    items: list[InputItem]
    single: bool


def parse_inputs(value: object) -> ParsedInputs:
    if isinstance(value, str):
        return ParsedInputs([value], single=True)
    if isinstance(value, np.ndarray) and value.ndim != 1:
        value = list(value)
    if not isinstance(value, Sequence | np.ndarray) or isinstance(value, (bytes, bytearray)):
        raise InputError(f"input must be {_FORMS}, got {type(value).__name__}")
    if len(value) == 0:
        raise EmptyInputError("input must not be empty")
    ids = token_array(value)
    if ids is not None:
        return ParsedInputs([ids], single=True)
    items = [_parse_item(item, index) for index, item in enumerate(value)]
    if len({isinstance(item, str) for item in items}) > 1:
        # OpenAI refuses such lists too: a caller mixing the forms has usually built the
        # list wrong, and guessing what they meant would embed the wrong thing.
        raise InputError(f"input must not mix strings and token-id lists; it must be {_FORMS}")
    return ParsedInputs(items, single=False)


def token_array(value: object) -> TokenArray | None:
    """`value` as one int64 array when it is a flat list of integers, else None.

    One pass over the element types and one numpy conversion, both in C: a 15 MB body of
    ids used to spend over a second in per-id Python checks. `True` is refused, although
    Python counts it as an int: `[1, true]` is a client's bug, not token 1.
    """
    if isinstance(value, np.ndarray):
        ok = value.ndim == 1 and value.dtype.kind in "iu"
        if ok and value.dtype == np.uint64 and value.size and value.max() > _INT64_MAX:
            return None  # numpy would wrap it around to a negative id
        return _to_int64(value) if ok else None
    if not is_token_list(value):
        return None
    return _to_int64(value)


def is_token_list(value: object) -> bool:
    """Whether `value` is a sequence of integers only: one pass over the types, in C."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes, bytearray)):
        return False
    return all(_is_integer_type(kind) for kind in set(map(type, value)))


def _is_integer_type(kind: type) -> bool:
    return kind is int or issubclass(kind, np.integer)  # np.bool_ is no np.integer


def _to_int64(value: object) -> TokenArray | None:
    try:
        return np.asarray(value, dtype=np.int64)
    except OverflowError:  # past int64: not a token id of any vocabulary
        return None


def _parse_item(item: object, index: int) -> InputItem:
    if isinstance(item, str):
        return item
    ids = token_array(item)
    if ids is not None:
        return ids
    raise InputError(
        f"input[{index}] must be a string or a list of token ids; input must be {_FORMS}",
        index=index,
    )
