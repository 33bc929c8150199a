"""`input_type` on the real model: the prefix is exactly a prefix of the text, counted in
the tokens, never cut by truncation, never applied to token ids or absent prompts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embellama import ConfigError, EmbeddingEngine, InputError
from embellama.model.tokenizer import PREFIX_MEMO_SIZE

TEXTS = ["how do vector databases work", "a passage about approximate nearest neighbours"]


@pytest.fixture(scope="module")
def prefixed(minilm_gguf: Path) -> Iterator[EmbeddingEngine]:
    with EmbeddingEngine.from_path(
        minilm_gguf, query_prefix="query: ", document_prefix="passage: "
    ) as engine:
        yield engine


@pytest.mark.parametrize(("input_type", "prefix"), [("query", "query: "), ("passage", "passage: ")])
def test_the_prefix_is_put_in_front(
    prefixed: EmbeddingEngine, input_type: str, prefix: str
) -> None:
    typed = prefixed.embed_with_details(TEXTS, input_type=input_type)
    glued = prefixed.embed_with_details([prefix + text for text in TEXTS])
    assert typed.vectors.tobytes() == glued.vectors.tobytes()
    assert typed.token_counts == glued.token_counts  # usage counts the prefix tokens
    assert typed.prefix == prefix and glued.prefix is None


def test_a_model_without_prompts_is_served_unchanged(engine: EmbeddingEngine) -> None:
    typed = engine.embed_with_details(TEXTS, input_type="query")
    plain = engine.embed_with_details(TEXTS)
    assert typed.vectors.tobytes() == plain.vectors.tobytes()
    assert typed.prefix == ""  # asked for, none applied


def test_token_ids_are_never_prefixed(prefixed: EmbeddingEngine) -> None:
    ids = prefixed.tokenize(TEXTS[0])
    typed = prefixed.embed_with_details([ids], input_type="query")
    assert typed.vectors.tobytes() == prefixed.embed_with_details([ids]).vectors.tobytes()


def test_truncation_keeps_the_prefix(prefixed: EmbeddingEngine) -> None:
    long_text = "words and more words " * 200
    full = prefixed.tokenize("query: " + long_text)  # [CLS] query : words ... [SEP]
    prefix_len = len(prefixed.tokenize("query: ", add_special=False))
    head, body, tail = full[: 1 + prefix_len], full[1 + prefix_len : -1], full[-1:]
    room = 512 - len(head) - len(tail)
    expected = {"end": head + body[:room] + tail, "start": head + body[-room:] + tail}
    for mode, ids in expected.items():
        typed = prefixed.embed_with_details([long_text], input_type="query", truncate=mode)
        assert typed.token_counts == (512,) and typed.truncated == (True,)
        by_ids = prefixed.embed_with_details([ids])
        assert typed.vectors.tobytes() == by_ids.vectors.tobytes(), mode


def test_unknown_input_type_is_an_input_error(prefixed: EmbeddingEngine) -> None:
    with pytest.raises(ValueError, match="input_type"):
        prefixed.embed("x", input_type="classification")


def test_an_instruction_without_input_type_is_refused(prefixed: EmbeddingEngine) -> None:
    """It fills the query prefix only: without input_type it would silently do nothing."""
    with pytest.raises(InputError, match="instruction") as refused:
        prefixed.embed("x", instruction="find passages about databases")
    assert refused.value.param == "instruction"
    assert prefixed.embed("x", input_type="query", instruction="find passages").shape == (384,)


@pytest.mark.parametrize(
    "template", ["Instruct: {instruction} {", "{instruction} {task}", "{0}: {instruction}"]
)
def test_a_template_that_cannot_be_filled_fails_the_load(minilm_gguf: Path, template: str) -> None:
    """At load, naming the setting, rather than failing every query that uses it."""
    with pytest.raises(ConfigError, match="instruction_template") as refused:
        EmbeddingEngine.from_path(minilm_gguf, instruction_template=template)
    assert template in str(refused.value)


def test_the_prefix_memo_is_bounded(minilm_gguf: Path) -> None:
    """Each request may send its own instruction: the memo of prefix lengths keeps the
    last PREFIX_MEMO_SIZE of them, not every one ever seen."""
    template = "Instruct: {instruction}\nQuery:"
    with EmbeddingEngine.from_path(minilm_gguf, instruction_template=template) as engine:
        tokenizer = engine.engine.embedder(None).model.tokenizer
        for n in range(3 * PREFIX_MEMO_SIZE):
            engine.embed("q", input_type="query", instruction=f"task number {n}", use_cache=False)
        memo: Any = tokenizer._prefix_lengths  # a dict before it was bounded
        held = memo.cache_info().currsize if hasattr(memo, "cache_info") else len(memo)
        assert held == PREFIX_MEMO_SIZE
        before = memo.cache_info().hits
        engine.embed("q", input_type="query", instruction="task number 191", use_cache=False)
        assert memo.cache_info().hits == before + 1  # the most recent ones are still there
