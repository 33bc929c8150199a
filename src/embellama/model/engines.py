"""Which engine runs a model's forward pass, decided once from the config and the header.

llama.cpp runs everything; ONNX Runtime runs what `onnx_bert.py` builds and the suite
verifies against transformers on that engine (tests/integration/test_onnx_engine.py):
BERT-architecture embedding files (BERT, DistilBERT, XLM-R) and NomicBERT ones with
unquantized weights, on the CPU. `auto` picks ONNX Runtime where it fits (measured faster: bench/engines.md,
bench/engines_server.md) and llama.cpp for everything else; an explicit `onnxruntime`
it cannot honour fails the load with the reason, never falls back.
"""

from __future__ import annotations

import importlib.util

from embellama.config import InferenceEngine, ModelConfig, ModelKind
from embellama.errors import ModelFileError
from embellama.model.gguf import GGUFInfo

__all__ = ["ONNX_ARCHITECTURES", "resolve_engine"]

# GGUF architectures the ONNX Runtime graph builder covers and the suite verifies, each
# with the tensors the builder reads (of the first layer; the rest by the same names).
_NEEDED_TENSORS = {
    "bert": frozenset(
        {
            "token_embd.weight",
            "position_embd.weight",
            "blk.0.attn_q.weight",
            "blk.0.attn_k.weight",
            "blk.0.attn_v.weight",
        }
    ),
    "nomic-bert": frozenset(
        {"token_embd.weight", "blk.0.attn_qkv.weight", "blk.0.ffn_gate.weight"}
    ),
}
ONNX_ARCHITECTURES = frozenset(_NEEDED_TENSORS)
# An ONNX model is one protobuf message, at most 2 GiB: the graph's F32 weights must fit
# with room for the rest (XLM-R large, bge-m3, e5-large need ~2.2 GB: llama.cpp runs them).
_GRAPH_BYTES = 1792 << 20


def resolve_engine(config: ModelConfig, header: GGUFInfo, kind: ModelKind) -> InferenceEngine:
    """`auto`: ONNX Runtime where it fits and is installed, else llama.cpp;
    `onnxruntime` only where it fits."""
    if config.engine is InferenceEngine.LLAMA_CPP:
        return InferenceEngine.LLAMA_CPP
    if config.engine is InferenceEngine.AUTO:
        fits = _onnx_problem(config, header, kind) is None and _onnxruntime_installed()
        return InferenceEngine.ONNXRUNTIME if fits else InferenceEngine.LLAMA_CPP
    problem = _onnx_problem(config, header, kind)
    if problem:
        raise ModelFileError(f"{header.path}: engine 'onnxruntime' {problem}; use 'llama.cpp'")
    return InferenceEngine.ONNXRUNTIME


def _onnx_problem(config: ModelConfig, header: GGUFInfo, kind: ModelKind) -> str | None:
    if header.architecture not in ONNX_ARCHITECTURES:
        return f"runs the 'bert' and 'nomic-bert' architectures only, not {header.architecture!r}"
    if kind is not ModelKind.EMBEDDING:
        return "runs embedding models only, not rerankers"
    if header.causal_attention:
        return "runs bidirectional encoders only, not a causal 'bert' file"
    needed = _NEEDED_TENSORS[header.architecture]
    fused = "blk.0.attn_qkv.weight" in header.tensor_names
    if needed - header.tensor_names or (header.architecture == "bert" and fused):
        missing = ", ".join(sorted(needed - header.tensor_names)) or "blk.0.attn_q.weight"
        return f"needs the tensors it builds its graph from (this file lacks {missing})"
    if header.architecture == "nomic-bert" and (problem := _rope_problem(header)):
        return problem
    if header.float32_bytes > _GRAPH_BYTES:
        return (
            f"builds graphs up to {_GRAPH_BYTES >> 20} MiB of F32 weights (ONNX's 2 GiB "
            f"protobuf limit); this file needs {header.float32_bytes >> 20} MiB"
        )
    if header.post_pooling_dense:
        return "does not run Dense layers after pooling (the graph ends at the encoder)"
    if header.quantized:
        return "runs F32, F16 and BF16 files only, not quantized ones"
    if config.n_gpu_layers:
        return "runs on the CPU only (n_gpu_layers must be 0)"
    return None


def _rope_problem(header: GGUFInfo) -> str | None:
    """The NomicBERT graph rotates whole heads at `rope.freq_base`, unscaled, as the
    stock converter writes nomic-embed-text; a file that says otherwise stays on
    llama.cpp rather than being embedded with positions of another kind."""
    arch, metadata = header.architecture, header.metadata
    scaling = metadata.get(f"{arch}.rope.scaling.type")
    factor = metadata.get(f"{arch}.rope.scaling.factor")
    if scaling not in (None, "none") or factor not in (None, 0, 1):
        return "rotates positions without rope scaling only (this file scales them)"
    heads = metadata.get(f"{arch}.attention.head_count")
    rotated = metadata.get(f"{arch}.rope.dimension_count")
    if (
        rotated is not None
        and isinstance(heads, int)
        and heads
        and rotated != header.n_embd // heads
    ):
        return "rotates whole attention heads only (this file rotates part of each)"
    return None


def _onnxruntime_installed() -> bool:
    """Both packages are dependencies; a trimmed install without them keeps llama.cpp."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))
