"""The sliced decoder is orjson, only in steps: on random bodies full of escapes, brackets
and commas inside strings, unicode and whitespace it returns what `orjson.loads` returns,
refuses what orjson refuses, and counts the strings, arrays and objects exactly.

The slice and scan sizes are shrunk so that bodies of a few kB cross many slice cuts and
block edges (an escape, a quote or a bracket right at an edge); a few bodies run at the
real sizes too. Seeded: a failure names the body that broke it.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from embellama.server import jsonbody
from embellama.server.jsonbody import NotAnObjectError, TooManyValuesError, loads_in_slices

SEED = 20_201
# Characters that matter to a scanner: quotes, backslashes, brackets and commas that
# must be ignored inside strings, multi-byte UTF-8, and separators JSON allows raw.
_CHARS = '"\\[]{},: abc\n\t/é€😀\u2028\x01'
_WHITESPACE = ["", "", "", " ", "\n", "\t ", "\r\n"]


def _string(rng: random.Random) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, 8)))


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.random()
    if depth > 3 or kind < 0.45:
        return rng.choice(
            [
                rng.randint(-(10**6), 10**6),
                rng.random() * 1e3,
                True,
                False,
                None,
                _string(rng),
                rng.randint(0, 30_000),
            ]
        )
    if kind < 0.75:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {_string(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _document(rng: random.Random) -> dict[str, Any]:
    """A top-level object with some long arrays (what gets sliced) among other values."""
    document: dict[str, Any] = {}
    for _ in range(rng.randint(1, 5)):
        key = rng.choice(["input", "tokens", "documents", _string(rng)])
        if rng.random() < 0.6:
            document[key] = [_value(rng, 2) for _ in range(rng.randint(6, 30))]
        else:
            document[key] = _value(rng, 1)
    return document


def _escaped_char(rng: random.Random, char: str) -> str:
    """`char` as JSON may write it: raw, \\uXXXX (a surrogate pair past the BMP), or a
    short escape."""
    short = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "/": "\\/", "\x01": "\\u0001"}
    if char in short and (char in '"\\\n\t\x01' or rng.random() < 0.5):
        return short[char]
    if rng.random() < 0.3:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04X}"
        return f"\\u{code:04x}"
    return char


def _encode(rng: random.Random, value: Any) -> str:
    """JSON text of `value` with random whitespace and escapes orjson never writes."""
    space = rng.choice(_WHITESPACE)
    if isinstance(value, dict):
        members = (
            f"{space}{_encode(rng, key)}{rng.choice(_WHITESPACE)}:{_encode(rng, item)}"
            for key, item in value.items()
        )
        return "{" + ",".join(members) + space + "}"
    if isinstance(value, list):
        return "[" + ",".join(space + _encode(rng, item) for item in value) + space + "]"
    if isinstance(value, str):
        return '"' + "".join(_escaped_char(rng, char) for char in value) + '"'
    return orjson.dumps(value).decode()


def _values(value: Any) -> int:
    """Strings (keys included), arrays and objects in `value`: what the scan counts."""
    if isinstance(value, dict):
        return 1 + sum(1 + _values(item) for item in value.values())
    if isinstance(value, list):
        return 1 + sum(_values(item) for item in value)
    return int(isinstance(value, str))


def _mutated(rng: random.Random, body: bytes) -> bytes:
    """One byte deleted, inserted or replaced: mostly invalid, sometimes still valid."""
    at = rng.randrange(len(body))
    byte = rng.choice(b'[]{},":\\ 0a')
    choice = rng.random()
    if choice < 0.33:
        return body[:at] + body[at + 1 :]
    if choice < 0.66:
        return body[:at] + bytes([byte]) + body[at:]
    return body[:at] + bytes([byte]) + body[at + 1 :]


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonbody, "SLICE_BYTES", 48)
    monkeypatch.setattr(jsonbody, "_BLOCK", 61)  # odd: edges fall on every kind of byte


def _bodies(count: int, seed: int = SEED) -> list[tuple[Any, bytes]]:
    rng = random.Random(seed)
    documents = [_document(rng) for _ in range(count)]
    return [(document, _encode(rng, document).encode()) for document in documents]


@pytest.mark.usefixtures("small_slices")
def test_random_bodies_decode_as_orjson_does() -> None:
    sliced = 0
    for document, body in _bodies(400):
        assert orjson.loads(body) == document  # the generator writes valid JSON
        assert loads_in_slices(body) == document, body
        sliced += len(body) > jsonbody.SLICE_BYTES
    assert sliced > 300  # nearly every body really went through the slicing path


@pytest.mark.usefixtures("small_slices")
def test_the_values_are_counted_exactly() -> None:
    for document, body in _bodies(200, SEED + 1):
        if len(body) <= jsonbody.SLICE_BYTES:
            continue
        exact = _values(document)
        assert loads_in_slices(body, max_values=exact) == document
        with pytest.raises(TooManyValuesError) as refused:
            loads_in_slices(body, max_values=exact - 1)
        assert refused.value.limit == exact - 1, body


@pytest.mark.usefixtures("small_slices")
def test_mutated_bodies_are_refused_exactly_when_orjson_refuses_them() -> None:
    rng = random.Random(SEED + 2)
    refused = 0
    for _, body in _bodies(300, SEED + 3):
        for _ in range(2):
            broken = _mutated(rng, body)
            try:
                expected = orjson.loads(broken)
            except orjson.JSONDecodeError:
                with pytest.raises((orjson.JSONDecodeError, NotAnObjectError)):
                    loads_in_slices(broken)
                refused += 1
                continue
            if isinstance(expected, dict):
                assert loads_in_slices(broken) == expected, broken
            else:
                with pytest.raises(NotAnObjectError):
                    loads_in_slices(broken)
    assert refused > 350  # most mutations break the body; each was refused


def test_bodies_at_the_real_slice_size() -> None:
    rng = random.Random(SEED + 4)
    for _ in range(4):
        items = [[_string(rng), rng.randint(0, 30_000), {"t": _string(rng)}] for _ in range(6000)]
        document = {"input": items, "note": _string(rng), "ids": list(range(30_000))}
        body = _encode(rng, document).encode()
        assert len(body) > 2 * jsonbody.SLICE_BYTES
        assert loads_in_slices(body) == document
        assert loads_in_slices(body, max_values=_values(document)) == document
        with pytest.raises(TooManyValuesError):
            loads_in_slices(body, max_values=_values(document) - 1)


@pytest.mark.usefixtures("small_slices")
@pytest.mark.parametrize("fault", [", ]", ",]", ",,", ", ,", "[,"])
def test_an_empty_element_at_a_slice_cut_is_refused(fault: str) -> None:
    """Elements longer than a slice put a cut at every comma: `[a, ]` cut at its comma
    would decode as `[a]` and `[]` unless an empty slice is refused."""
    items = ",".join(f'"{letter * 60}"' for letter in "abcdef")
    body = {
        ", ]": '{"input": [' + items + ", ]}",
        ",]": '{"input": [' + items + ",]}",
        ",,": '{"input": [' + items.replace(",", ",,", 1) + "]}",
        ", ,": '{"input": [' + items.replace(",", ", ,", 1) + "]}",
        "[,": '{"input": [,' + items + "]}",
    }[fault].encode()
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    with pytest.raises(orjson.JSONDecodeError):
        loads_in_slices(body)
