"""Which engine runs a file: `auto` takes ONNX Runtime only for what its graph builder
covers and the suite verifies (a BERT-architecture embedding file, unquantized, no Dense
layers after pooling, on the CPU), llama.cpp for everything else; an explicit
`onnxruntime` that does not fit fails the load with the reason."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from embellama.config import InferenceEngine, ModelConfig, ModelKind
from embellama.errors import ModelFileError
from embellama.model.engines import resolve_engine
from embellama.model.gguf import GGUFInfo, read_gguf_info


@pytest.fixture(scope="module")
def minilm(minilm_gguf: Path) -> GGUFInfo:
    return read_gguf_info(minilm_gguf)


def _config(path: Path, engine: str, **fields: object) -> ModelConfig:
    return ModelConfig(path=path, engine=engine, **fields)  # type: ignore[arg-type]


def test_auto_runs_the_default_model_on_onnx_runtime(minilm: GGUFInfo) -> None:
    assert 80 << 20 < minilm.float32_bytes < 100 << 20  # 46 MB of F16, widened
    chosen = resolve_engine(_config(minilm.path, "auto"), minilm, ModelKind.EMBEDDING)
    assert chosen is InferenceEngine.ONNXRUNTIME
    pinned = resolve_engine(_config(minilm.path, "llama.cpp"), minilm, ModelKind.EMBEDDING)
    assert pinned is InferenceEngine.LLAMA_CPP


def _nomic(extra: dict[str, object]) -> dict[str, object]:
    """A header change making MiniLM's header a NomicBERT one (12 heads of 32) plus `extra`."""
    tensors = frozenset({"token_embd.weight", "blk.0.attn_qkv.weight", "blk.0.ffn_gate.weight"})
    metadata = {"nomic-bert.attention.head_count": 12, "nomic-bert.rope.freq_base": 1000.0}
    return {
        "architecture": "nomic-bert",
        "tensor_names": tensors,
        "metadata": {**metadata, **extra},
    }


def test_auto_runs_an_unscaled_nomic_bert_file_on_onnx_runtime(minilm: GGUFInfo) -> None:
    header = dataclasses.replace(minilm, **_nomic({"nomic-bert.rope.dimension_count": 32}))  # type: ignore[arg-type]
    chosen = resolve_engine(_config(minilm.path, "auto"), header, ModelKind.EMBEDDING)
    assert chosen is InferenceEngine.ONNXRUNTIME


@pytest.mark.parametrize(
    ("change", "kind", "fields", "says"),
    [
        ({"architecture": "gemma3"}, ModelKind.EMBEDDING, {}, "'nomic-bert' architectures only"),
        ({"architecture": "nomic-bert-moe"}, ModelKind.EMBEDDING, {}, "not 'nomic-bert-moe'"),
        ({}, ModelKind.RERANK, {}, "not rerankers"),
        ({"post_pooling_dense": True}, ModelKind.EMBEDDING, {}, "Dense layers"),
        ({"quantized": True}, ModelKind.EMBEDDING, {}, "not quantized ones"),
        ({"causal_attention": True}, ModelKind.EMBEDDING, {}, "bidirectional encoders only"),
        # bge-m3 / e5-large: 2.2 GB of F32 weights, past ONNX's 2 GiB protobuf limit.
        ({"float32_bytes": 2_240_000_000}, ModelKind.EMBEDDING, {}, "2 GiB protobuf limit"),
        (
            {"tensor_names": frozenset({"token_embd.weight", "blk.0.attn_qkv.weight"})},
            ModelKind.EMBEDDING,
            {},
            "lacks blk.0.attn_k.weight",
        ),
        (  # a nomic-bert file without its SwiGLU gate
            {
                "architecture": "nomic-bert",
                "tensor_names": frozenset({"token_embd.weight", "blk.0.attn_qkv.weight"}),
            },
            ModelKind.EMBEDDING,
            {},
            "lacks blk.0.ffn_gate.weight",
        ),
        ({}, ModelKind.EMBEDDING, {"n_gpu_layers": 99}, "CPU only"),
        (_nomic({"nomic-bert.rope.scaling.type": "yarn"}), ModelKind.EMBEDDING, {}, "rope scaling"),
        (_nomic({"nomic-bert.rope.scaling.factor": 4.0}), ModelKind.EMBEDDING, {}, "rope scaling"),
        (
            _nomic({"nomic-bert.rope.dimension_count": 16}),
            ModelKind.EMBEDDING,
            {},
            "whole attention",
        ),
    ],
)
def test_what_onnx_runtime_does_not_run_stays_on_llama_cpp(
    minilm: GGUFInfo,
    change: dict[str, object],
    kind: ModelKind,
    fields: dict[str, object],
    says: str,
) -> None:
    header = dataclasses.replace(minilm, **change)  # type: ignore[arg-type]
    auto = resolve_engine(_config(minilm.path, "auto", **fields), header, kind)
    assert auto is InferenceEngine.LLAMA_CPP
    with pytest.raises(ModelFileError, match=says):
        resolve_engine(_config(minilm.path, "onnxruntime", **fields), header, kind)
