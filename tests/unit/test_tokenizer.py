"""The tokenizer on real vocabularies, loaded without weights (tens of ms): the input
limit and its error, truncation at either end, chunk windows, the prefix memo, token-id
inputs, empty and unencodable inputs, the EOS override and the piece lookups."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from embellama.config import ModelConfig, Truncation
from embellama.errors import (
    EmptyInputError,
    InputError,
    InputTooLongError,
    InvalidTextError,
    InvalidTokenError,
    TokenLimitError,
)
from embellama.model.loaded import LoadedModel
from embellama.model.tokenizer import PREFIX_MEMO_SIZE, Chunking, Tokenizer

# MiniLM's WordPiece vocabulary: [CLS] ... [SEP] around every text.
CLS, SEP, HELLO, WORLD = 101, 102, 7592, 2088
LIMIT = 8
# Ten words, one token each: the body of a text over the 8-token limit.
WORDS = "one two three four five six seven eight nine ten"


def _vocab(path: Path, **options: object) -> Iterator[Tokenizer]:
    model = LoadedModel(ModelConfig(path, **options), inference=False)  # type: ignore[arg-type]
    yield model.tokenizer
    model.close()


@pytest.fixture(scope="module")
def tokenizer(minilm_gguf: Path) -> Iterator[Tokenizer]:
    yield from _vocab(minilm_gguf, n_ctx=LIMIT)


@pytest.fixture(scope="module")
def without_eos(minilm_gguf: Path) -> Iterator[Tokenizer]:
    yield from _vocab(minilm_gguf, n_ctx=LIMIT, add_eos=False)


@pytest.fixture(scope="module")
def gemma(gemma3_gguf: Path) -> Iterator[Tokenizer]:
    """A vocabulary that adds BOS and no EOS (262k tokens: ~0.5 s to load)."""
    yield from _vocab(gemma3_gguf, allow_unverified_architecture=True)


@pytest.fixture(scope="module")
def gemma_with_eos(gemma3_gguf: Path) -> Iterator[Tokenizer]:
    yield from _vocab(gemma3_gguf, allow_unverified_architecture=True, add_eos=True)


def _ids(values: list[int]) -> npt.NDArray[np.int64]:
    """Token ids as an input item (what the request parser produces)."""
    return np.asarray(values, np.int64)


def _body(tokenizer: Tokenizer, text: str) -> list[int]:
    """The text's ids without the [CLS]/[SEP] the vocabulary adds."""
    ids: list[int] = tokenizer.encode_text(text).tolist()
    assert (ids[0], ids[-1]) == (CLS, SEP)
    return ids[1:-1]


def test_an_input_within_the_limit_is_kept_whole(tokenizer: Tokenizer) -> None:
    (item,) = tokenizer.prepare(["hello world"], Truncation.NONE)
    assert item.ids.tolist() == [CLS, HELLO, WORLD, SEP]
    assert item.ids.dtype == np.int32
    assert not item.truncated


def test_an_input_over_the_limit_is_refused_with_its_index(tokenizer: Tokenizer) -> None:
    with pytest.raises(InputTooLongError) as caught:
        tokenizer.prepare(["hello", WORDS], Truncation.NONE)
    assert (caught.value.index, caught.value.n_tokens, caught.value.limit) == (1, 12, LIMIT)
    assert str(caught.value).startswith("input 1 has 12 tokens, more than the model's limit of 8")


@pytest.mark.parametrize("truncation", [Truncation.END, Truncation.START])
def test_truncation_cuts_the_body_and_keeps_the_special_tokens(
    tokenizer: Tokenizer, truncation: Truncation
) -> None:
    body = _body(tokenizer, WORDS)
    (item,) = tokenizer.prepare([WORDS], truncation)
    kept = body[: LIMIT - 2] if truncation is Truncation.END else body[-(LIMIT - 2) :]
    assert item.ids.tolist() == [CLS, *kept, SEP]
    assert item.truncated


def test_truncation_never_cuts_into_the_prefix(tokenizer: Tokenizer) -> None:
    prefix = _body(tokenizer, "query: ")
    body = _body(tokenizer, WORDS)
    (item,) = tokenizer.prepare([WORDS], Truncation.START, prefix="query: ")
    assert item.ids.tolist() == [CLS, *prefix, *body[-(LIMIT - 2 - len(prefix)) :], SEP]


def test_specials_and_prefix_that_fill_the_limit_leave_nothing_to_cut(
    tokenizer: Tokenizer,
) -> None:
    with pytest.raises(InputTooLongError):
        tokenizer.prepare([WORDS], Truncation.END, prefix="one two three four five six ")


def test_chunk_windows_overlap_and_each_keeps_the_special_tokens(tokenizer: Tokenizer) -> None:
    """Room 6 per window, overlap 2: a 10-token body is windows [0:6] and [4:10]."""
    body = _body(tokenizer, WORDS)
    (item,) = tokenizer.prepare([WORDS], Truncation.CHUNK, chunking=Chunking(overlap=2))
    assert item.truncated
    assert item.ids.tolist() == [CLS, *body, SEP]
    assert [w.tolist() for w in item.windows] == [
        [CLS, *body[0:6], SEP],
        [CLS, *body[4:10], SEP],
    ]


def test_chunking_leaves_an_input_that_fits_alone(tokenizer: Tokenizer) -> None:
    (item,) = tokenizer.prepare(["hello world"], Truncation.CHUNK)
    assert (item.truncated, item.windows) == (False, ())


def test_chunk_windows_are_capped_per_input(tokenizer: Tokenizer) -> None:
    """Overlap 3: windows start at 0, 3 and 6 of the 10-token body: 3 > a cap of 2."""
    with pytest.raises(InputError, match="input 0 needs 3 windows of 6 tokens; at most 2") as e:
        tokenizer.prepare([WORDS], Truncation.CHUNK, chunking=Chunking(overlap=3, max_windows=2))
    assert e.value.index == 0
    (item,) = tokenizer.prepare(
        [WORDS], Truncation.CHUNK, chunking=Chunking(overlap=3, max_windows=3)
    )
    assert len(item.windows) == 3


def test_an_overlap_as_wide_as_a_window_is_refused(tokenizer: Tokenizer) -> None:
    with pytest.raises(InputError, match="chunk_overlap=6 must be smaller than a window's 6"):
        tokenizer.prepare([WORDS], Truncation.CHUNK, chunking=Chunking(overlap=6))


def test_a_prefix_is_tokenized_once_and_the_memo_is_bounded(minilm_gguf: Path) -> None:
    """A fresh vocabulary: the memo is per tokenizer."""
    for tokenizer in _vocab(minilm_gguf):
        memo = tokenizer._prefix_lengths  # the LRU memo of prefix token counts
        for _ in range(3):
            tokenizer.prepare(["hello", "world"], Truncation.NONE, prefix="query: ")
        assert (memo.cache_info().misses, memo.cache_info().hits) == (1, 2)
        for n in range(PREFIX_MEMO_SIZE + 10):
            tokenizer.prepare(["hello"], Truncation.NONE, prefix=f"instruction {n}: ")
        assert memo.cache_info().currsize == PREFIX_MEMO_SIZE


def test_token_ids_are_checked_against_the_vocabulary(tokenizer: Tokenizer) -> None:
    top = tokenizer.vocab_size - 1
    assert tokenizer.check_ids([0, top]).tolist() == [0, top]
    with pytest.raises(InvalidTokenError) as caught:
        tokenizer.check_ids([5, top + 1], index=3)
    assert str(caught.value) == (
        f"input 3 has token id {top + 1} at position 1, outside the vocabulary (0..{top})"
    )
    assert caught.value.index == 3
    with pytest.raises(InvalidTokenError, match="token id -1 at position 0"):
        tokenizer.prepare([_ids([-1, 5])], Truncation.NONE)


def test_token_ids_get_no_special_tokens_and_are_cut_as_given(tokenizer: Tokenizer) -> None:
    ids = list(range(1000, 1010))
    (whole, cut) = tokenizer.prepare([_ids(ids[:3]), _ids(ids)], Truncation.END)
    assert whole.ids.tolist() == ids[:3]
    assert cut.ids.tolist() == ids[:LIMIT]
    (chunked,) = tokenizer.prepare([_ids(ids)], Truncation.CHUNK)
    assert [w.tolist() for w in chunked.windows] == [ids[:8], ids[8:]]


def test_empty_inputs_are_refused(tokenizer: Tokenizer) -> None:
    with pytest.raises(EmptyInputError, match="input 1 is an empty string"):
        tokenizer.prepare(["hello", ""], Truncation.NONE)
    with pytest.raises(EmptyInputError, match="input 0 is an empty string"):
        tokenizer.prepare([""], Truncation.NONE, prefix="query: ")  # not made valid by it
    with pytest.raises(EmptyInputError, match="input 2 is an empty list of token ids"):
        tokenizer.check_ids([], index=2)


def test_text_that_is_not_unicode_is_refused(tokenizer: Tokenizer) -> None:
    with pytest.raises(InvalidTextError, match="input 0 is not valid Unicode text"):
        tokenizer.prepare(["lone \ud800 surrogate"], Truncation.NONE)


def test_a_token_cap_refuses_a_long_text_before_tokenizing_it_whole(
    tokenizer: Tokenizer,
) -> None:
    with pytest.raises(TokenLimitError, match="the text has at least 100 tokens") as caught:
        tokenizer.encode_text("hello " * 100, max_tokens=10)  # counted window by window
    assert caught.value.limit == 10
    with pytest.raises(TokenLimitError, match="more than the limit of 10 per request"):
        tokenizer.encode_text("hello " * 12, max_tokens=10)  # within the margin: native cap
    assert len(tokenizer.encode_text("hello " * 8, max_tokens=10)) == 10


def test_add_eos_false_drops_the_trailing_special(without_eos: Tokenizer) -> None:
    assert without_eos.encode_text("hello world").tolist() == [CLS, HELLO, WORLD]
    assert without_eos.encode_text("hello world", add_special=False).tolist() == [HELLO, WORLD]
    (item,) = without_eos.prepare([WORDS], Truncation.END)
    assert len(item.ids) == LIMIT and item.ids[-1] != SEP  # no trailing special to keep


def test_add_eos_true_appends_eos_to_texts_only(
    gemma: Tokenizer, gemma_with_eos: Tokenizer
) -> None:
    plain = gemma.encode_text("hello world").tolist()
    eos = gemma_with_eos._native.eos_token
    assert plain[-1] != eos
    assert gemma_with_eos.encode_text("hello world").tolist() == [*plain, eos]
    (ids,) = gemma_with_eos.prepare([_ids([5, 6])], Truncation.NONE)
    assert ids.ids.tolist() == [5, 6]


def test_pieces_and_detokenize(tokenizer: Tokenizer) -> None:
    # WordPiece marks a word's first piece with the space before it.
    assert tokenizer.pieces([HELLO, WORLD]) == [b" hello", b" world"]
    assert tokenizer.detokenize([HELLO, WORLD]) == " hello world"
    with pytest.raises(InvalidTokenError):
        tokenizer.pieces([tokenizer.vocab_size])
    found = tokenizer.encode_with_pieces("world hello world", add_special=False)
    assert found.ids.tolist() == [WORLD, HELLO, WORLD]
    assert found.distinct.tolist() == [WORLD, HELLO]
    assert found.pieces_in_order() == [b" world", b" hello", b" world"]
    assert tokenizer.encode_with_pieces("").ids.tolist() == []
