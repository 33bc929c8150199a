"""Decode a large JSON request body in short steps, so the event loop keeps answering.

orjson decodes a body in one call that holds the GIL: ~90 ms for a 12 MB body of token
ids, during which no other thread (the event loop included) runs. Here a large body is
decoded on a worker thread in slices: a vectorized scan (numpy, which releases the GIL)
finds the element boundaries of the large arrays at the top level of the object, and
each slice is one short orjson call; between calls the loop gets the GIL. A body that
is not an object is refused unread, and one with more values (strings, arrays, objects)
than the caller allows is refused from the scan, before any is built: 16 MiB of `[],`
became 5.6 M lists, 815 MB and 33 s of work before the input count was checked. Knows
JSON only, nothing of the routes.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

__all__ = ["SLICE_BYTES", "NotAnObjectError", "TooManyValuesError", "loads_in_slices"]

# Bytes one orjson call decodes: ~2 ms of GIL for number arrays.
SLICE_BYTES = 128 * 1024
_BLOCK = 1 << 18  # the scan's unit: bounds its temporaries (and each GIL hold) to little
_QUOTE, _BACKSLASH, _COMMA = 0x22, 0x5C, 0x2C
_OPEN, _CLOSE = (0x5B, 0x7B), (0x5D, 0x7D)


class NotAnObjectError(ValueError):
    """The body's first value is not a JSON object."""


class TooManyValuesError(ValueError):
    """The body holds more strings, arrays and objects than the caller allows."""

    def __init__(self, found: int, limit: int) -> None:
        self.found = found
        self.limit = limit
        super().__init__(f"the body holds over {found} values, more than {limit}")


def loads_in_slices(body: bytes, max_values: int | None = None) -> Any:
    """`orjson.loads(body)` for an object, decoded slice by slice when large.

    Raises `orjson.JSONDecodeError` for invalid JSON, NotAnObjectError when the body is
    some other JSON value, and TooManyValuesError when a large body holds more than
    `max_values` strings, arrays and objects (numbers are not counted: a list of token
    ids is one value). A body of up to a slice is decoded whole: it cannot hold more
    than ~44 K values, a few MB.
    """
    if len(body) <= SLICE_BYTES:
        return orjson.loads(body)
    if body.lstrip()[:1] != b"{":
        raise NotAnObjectError("the request body must be a JSON object")
    arrays = _Scan(body, max_values).large_arrays()
    if not arrays:
        return orjson.loads(body)
    marker = uuid.uuid4().hex
    skeleton, values = [], {}
    position = 0
    for index, (start, end, cuts) in enumerate(arrays):
        name = f"{marker}:{index}"
        skeleton += [body[position:start], orjson.dumps(name)]
        values[name] = _decode_array(body, start, end, cuts)
        position = end + 1
    skeleton.append(body[position:])
    document = orjson.loads(b"".join(skeleton))
    if not isinstance(document, dict):
        raise NotAnObjectError("the request body must be a JSON object")
    for key, value in document.items():
        if isinstance(value, str) and value in values:
            document[key] = values.pop(value)
    return document


def _decode_array(body: bytes, start: int, end: int, cuts: list[int]) -> list[Any]:
    """The array `body[start..end]` (brackets included), one orjson call per slice."""
    items: list[Any] = []
    bounds = [start, *cuts, end]
    for left, right in itertools.pairwise(bounds):
        part = body[left + 1 : right]
        if not part.strip():  # "[1,]" must stay invalid once cut at its comma
            raise orjson.JSONDecodeError("an array element is missing", "", right)
        items.extend(orjson.loads(b"[" + part + b"]"))
    return items


class _Scan:
    """Where the strings, nesting depths and top-level arrays of a body are, block by
    block (each block's temporaries are a few MB whatever the body's size)."""

    def __init__(self, body: bytes, max_values: int | None = None) -> None:
        self.data = np.frombuffer(body, np.uint8)
        self.max_values = max_values
        self.openings = self.quotes = 0  # arrays and objects; string quotes (two each)

    def _count(self, step: npt.NDArray[np.int8], is_quote: npt.NDArray[np.bool_]) -> None:
        """Refuse the body as soon as its values are over the cap: nothing is built yet."""
        self.openings += int(np.count_nonzero(step == 1))
        self.quotes += int(np.count_nonzero(is_quote))
        values = self.openings + self.quotes // 2
        if self.max_values is not None and values > self.max_values:
            raise TooManyValuesError(values, self.max_values)

    def large_arrays(self) -> list[tuple[int, int, list[int]]]:
        """Arrays that are values of the top-level object and longer than a slice:
        (opening bracket, closing bracket, commas to cut at, about a slice apart)."""
        found: list[tuple[int, int, list[int]]] = []
        backslashes = quotes = depth = 0
        opened: int | None = None
        cuts: list[int] = []
        for begin in range(0, len(self.data), _BLOCK):
            block = self.data[begin : begin + _BLOCK]
            outside, is_quote, backslashes, quotes = _outside_strings(block, backslashes, quotes)
            step = np.zeros(len(block), np.int8)
            for code in _OPEN:
                step[(block == code) & outside] = 1
            for code in _CLOSE:
                step[(block == code) & outside] = -1
            self._count(step, is_quote)
            after = depth + np.cumsum(step, dtype=np.int32)
            # Only the top-level object's values open and close at depth 2 / 1.
            events = np.flatnonzero(((step == 1) & (after == 2)) | ((step == -1) & (after == 1)))
            commas = np.flatnonzero((block == _COMMA) & outside & (after == 2))
            for position in events:
                level = int(after[position])
                if step[position] == 1 and level == 2 and block[position] == _OPEN[0]:
                    opened, cuts = begin + int(position), []
                elif step[position] == -1 and level == 1 and opened is not None:
                    closed = begin + int(position)
                    if closed - opened > SLICE_BYTES:
                        inside = commas[(commas + begin > opened) & (commas + begin < closed)]
                        found.append((opened, closed, cuts + _spaced(inside + begin, opened)))
                    opened, cuts = None, []
            if opened is not None:  # an array still open at the block's end
                cuts += _spaced(commas[commas + begin > opened] + begin, opened)
            depth = int(after[-1]) if len(after) else depth
        return found


def _spaced(commas: npt.NDArray[np.int64], opened: int) -> list[int]:
    """The first comma of each slice-sized stretch after `opened`."""
    if not len(commas):
        return []
    stretch = (commas - opened) // SLICE_BYTES
    first = np.flatnonzero(np.diff(stretch, prepend=-1) != 0)
    return [int(commas[i]) for i in first if stretch[i] > 0]


def _outside_strings(
    block: npt.NDArray[np.uint8], backslashes: int, quotes: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], int, int]:
    """Which bytes lie outside strings and which are string quotes, given the run of
    backslashes and the count of string quotes carried from the blocks before; and the
    new carries."""
    is_quote = block == _QUOTE
    slashes = np.flatnonzero(block == _BACKSLASH)
    if len(slashes) or backslashes:
        # A quote is escaped when an odd run of backslashes ends just before it.
        starts = np.flatnonzero(np.diff(slashes, prepend=-2) != 1)
        lengths = np.diff(np.append(starts, len(slashes)))
        ends = slashes[starts + lengths - 1] if len(slashes) else slashes
        if len(slashes) and slashes[0] == 0:
            lengths[0] += backslashes
        elif backslashes and block[0] == _QUOTE and backslashes % 2:
            is_quote[0] = False
        after = ends + 1
        odd = after[(lengths % 2 == 1) & (after < len(block))]
        is_quote[odd] = False
        tail = int(lengths[-1]) if len(slashes) and ends[-1] == len(block) - 1 else 0
    else:
        tail = 0
    inside = np.bitwise_xor.accumulate(is_quote.view(np.uint8)) != quotes
    outside = ~inside & ~is_quote
    return outside, is_quote, tail, (quotes + int(is_quote.sum())) % 2
