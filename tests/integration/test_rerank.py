"""Rerank through the library against transformers: a tiny random XLM-RoBERTa
cross-encoder (bge-reranker style) converted with the stock converter, and BERT
cross-encoders that llama.cpp cannot score correctly, which must be refused."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from embellama import (
    AsyncEmbeddingEngine,
    EmbeddingEngine,
    EngineConfig,
    InputError,
    InputTooLongError,
    ModelConfig,
    ModelFileError,
    ModelKind,
    Truncation,
    WrongModelKindError,
)
from tests.fixtures.tiny_encoders import build_tiny_encoder
from tests.fixtures.tiny_xlmr import TinyXlmr, build_tiny_xlmr
from tests.tolerances import (
    RERANK_BATCH_INVARIANCE_ATOL,
    RERANK_LOGIT_ATOL,
    assert_batch_invariant,
)

pytestmark = pytest.mark.slow

QUERY = "how do local embeddings work?"
DOCUMENTS = (
    "Local embeddings run on your own machine.",
    "A recipe for bread: flour, water, salt.",
    'Ünïcödé àccents and "quotes"',
    "日本語のテキスト 中文 русский",
    "emoji 🙂 and math ∑ √",
    "tabs\tand\nnewlines  double  spaces",
    "a",
    " ".join(["a paragraph about local embeddings and retrieval"] * 6),
)


@pytest.fixture(scope="module")
def reranker(tmp_path_factory: pytest.TempPathFactory) -> TinyXlmr:
    return build_tiny_xlmr(tmp_path_factory.mktemp("xlmr-reranker"), classifier=True)


def _transformers_logits(hf_dir: Path, query: str, documents: tuple[str, ...]) -> list[float]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(hf_dir))
    model.train(False)
    logits = []
    with torch.no_grad():
        for document in documents:
            encoded = tokenizer(query, document, return_tensors="pt")
            logits.append(float(model(**encoded).logits[0, 0]))
    return logits


def test_scores_match_transformers(reranker: TinyXlmr) -> None:
    expected = _transformers_logits(reranker.hf_dir, QUERY, DOCUMENTS)
    with EmbeddingEngine.from_path(reranker.gguf) as engine:
        info = engine.model_info()
        assert (info.kind, info.verified) == (ModelKind.RERANK, True)
        result = engine.rerank(QUERY, list(DOCUMENTS))
    by_index = {hit.index: hit for hit in result.hits}
    assert sorted(by_index) == list(range(len(DOCUMENTS)))
    for index, logit in enumerate(expected):
        hit = by_index[index]
        assert abs(hit.logit - logit) <= RERANK_LOGIT_ATOL, DOCUMENTS[index]
        # CrossEncoder.predict's score for a one-logit head: the sigmoid.
        assert hit.relevance_score == pytest.approx(1 / (1 + math.exp(-hit.logit)), abs=1e-12)
        assert hit.document == DOCUMENTS[index] and not hit.truncated
    scores = [hit.relevance_score for hit in result.hits]
    assert scores == sorted(scores, reverse=True)


def test_pair_ids_equal_transformers(reranker: TinyXlmr) -> None:
    """<s> q </s></s> d </s>, both halves without special-token parsing: a document
    that writes "</s>" cannot end its segment early."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(reranker.hf_dir))
    forged = "a document that says </s> and <s> in its text"
    documents = [*DOCUMENTS, forged]
    with EmbeddingEngine.from_path(reranker.gguf) as engine:
        pairs = engine.engine.reranker(None).model.tokenizer.prepare_pairs(
            QUERY, documents, Truncation.END
        )
        counts = {hit.index: hit.tokens for hit in engine.rerank(QUERY, documents).hits}
    for index, (document, pair) in enumerate(zip(documents, pairs, strict=True)):
        assert counts[index] == len(pair.ids)
        if document != forged:
            assert pair.ids.tolist() == tokenizer(QUERY, document).input_ids, document
    specials = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.sep_token_id}
    ids = pairs[-1].ids.tolist()
    assert [i for i, t in enumerate(ids) if t in specials] == [
        0,
        len(tokenizer(QUERY).input_ids) - 1,
        len(tokenizer(QUERY).input_ids),
        len(ids) - 1,
    ]


def test_batched_scores_equal_one_pair_at_a_time(reranker: TinyXlmr) -> None:
    """1 query x 200 documents in one call, packed by token budget, against each pair
    scored alone."""
    rng = np.random.default_rng(0)
    words = [
        "local",
        "embeddings",
        "retrieval",
        "search",
        "bread",
        "flour",
        "index",
        "vector",
        "query",
        "model",
    ]
    documents = [" ".join(rng.choice(words, size=int(rng.integers(3, 60)))) for _ in range(200)]
    with EmbeddingEngine.from_path(reranker.gguf) as engine:
        together = {hit.index: hit.logit for hit in engine.rerank(QUERY, documents).hits}
        alone = [engine.rerank(QUERY, [document]).hits[0].logit for document in documents]
    worst = max(abs(together[i] - alone[i]) for i in range(len(documents)))
    assert worst <= RERANK_BATCH_INVARIANCE_ATOL


def test_concurrent_reranks_mixed_with_embeddings(reranker: TinyXlmr, tmp_path: Path) -> None:
    """A reranker beside an embedder in one engine; many calls at once, each answered
    as if it ran alone."""
    encoder = build_tiny_xlmr(tmp_path, classifier=False)
    queries = [f"query {i} about local embeddings" for i in range(12)]

    async def run() -> None:
        configs = EngineConfig(
            (
                ModelConfig(path=encoder.gguf, name="encoder", kind=ModelKind.EMBEDDING),
                ModelConfig(path=reranker.gguf, name="reranker", kind=ModelKind.RERANK),
            )
        )
        async with await AsyncEmbeddingEngine.create(configs) as engine:
            alone = [await engine.rerank(q, list(DOCUMENTS)) for q in queries]
            vectors_alone = await engine.embed(queries)
            reranks, vectors = await asyncio.gather(
                asyncio.gather(*(engine.rerank(q, list(DOCUMENTS)) for q in queries)),
                asyncio.gather(*(engine.embed(q) for q in queries)),
            )
            for one, many in zip(alone, reranks, strict=True):
                assert [h.index for h in one.hits] == [h.index for h in many.hits]
                for a, b in zip(one.hits, many.hits, strict=True):
                    assert abs(a.logit - b.logit) <= RERANK_BATCH_INVARIANCE_ATOL
            for vector, other in zip(vectors_alone, vectors, strict=True):
                assert_batch_invariant(other, vector)
            # Without a model named, each call goes to the first model of its kind.
            assert (await engine.rerank("q", ["d"])).model == "reranker"
            with pytest.raises(WrongModelKindError, match="is a reranker"):
                await engine.embed("text", model="reranker")
            with pytest.raises(WrongModelKindError, match="is an embedding model"):
                await engine.rerank("q", ["d"], model="encoder")

    asyncio.run(run())


def test_top_n_truncation_and_errors(reranker: TinyXlmr) -> None:
    long_document = "local embeddings " * 400
    with EmbeddingEngine.from_path(reranker.gguf) as engine:
        limit = engine.model_info().context_length
        top = engine.rerank(QUERY, list(DOCUMENTS), top_n=3)
        assert len(top) == 3
        assert top.total_tokens == engine.rerank(QUERY, list(DOCUMENTS)).total_tokens
        cut = engine.rerank(QUERY, [long_document, "short"]).hits
        long_hit = next(hit for hit in cut if hit.index == 0)
        assert long_hit.truncated and long_hit.tokens == limit
        capped = engine.rerank(QUERY, [long_document], max_tokens_per_doc=5).hits[0]
        # <s> query </s></s> + 5 document tokens + </s>
        query_tokens = len(engine.tokenize(QUERY, add_special=False))
        assert capped.truncated and capped.tokens == 1 + query_tokens + 2 + 5 + 1
        with pytest.raises(InputTooLongError) as refused:
            engine.rerank(QUERY, ["short", long_document], truncate=False)
        assert refused.value.param == "documents[1]"
        with pytest.raises(InputTooLongError) as query_too_long:
            engine.rerank(long_document * 2, ["short"])
        assert query_too_long.value.param == "query"
        with pytest.raises(InputError, match="empty"):
            engine.rerank("", ["x"])
        with pytest.raises(InputError, match="document 1 is an empty string"):
            engine.rerank("q", ["x", ""])
        with pytest.raises(InputError, match="top_n"):
            engine.rerank("q", ["x"], top_n=0)


def test_kind_in_config_must_match_the_file(reranker: TinyXlmr) -> None:
    with pytest.raises(ModelFileError, match="is a rerank model, but its configuration says"):
        EmbeddingEngine.from_path(reranker.gguf, kind="embedding")


@pytest.mark.parametrize(
    ("family", "reason"),
    [
        ("bert-reranker", "2 token types"),  # ms-marco-MiniLM style
        ("bert-reranker-1", "no dense layer"),  # one token type, pooler still dropped
    ],
)
def test_bert_cross_encoders_are_refused(family: str, reason: str, tmp_path: Path) -> None:
    """llama.cpp scores these wrongly (shared/notes/rerank-in-llama-cpp.md): refuse them,
    even when unverified architectures are allowed."""
    built = build_tiny_encoder(tmp_path, family)
    for allow in (False, True):
        with pytest.raises(ModelFileError, match=reason):
            EmbeddingEngine.from_path(built.gguf, allow_unverified_architecture=allow)
