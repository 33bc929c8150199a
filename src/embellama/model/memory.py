"""How much memory a model's contexts take, from its GGUF header, before allocating any.

llama.cpp allocates a context's buffers at creation: the KV cache (causal models),
the compute buffer (sized for the largest micro-batch) and the output buffer (one
row of logits over the vocabulary plus one embedding per output token). A default
that asks for more than the machine has crashes the worker at start, so the serving
context is chosen here from an upper-bound estimate and the memory available.
Knows nothing about llama.cpp handles; reads only header facts and /proc.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from embellama.config import ModelConfig, ModelKind
from embellama.errors import ConfigError
from embellama.model.architectures import model_kind
from embellama.model.gguf import GGUFInfo

__all__ = [
    "ContextShape",
    "FittedContext",
    "MemoryEstimate",
    "available_memory",
    "context_limit",
    "context_shape",
    "estimate_memory",
    "fit_context",
    "format_bytes",
]

_log = logging.getLogger("embellama.memory")

# ggml's CPU flash attention switches to a tiled kernel at this many query rows in a
# micro-batch; encoders decode shorter batches on a second, plain-attention context
# of this size (model/native.py explains why).
FLASH_ATTENTION_TILE = 64
# The smallest context a default is lowered to; below it a model is not worth serving.
MIN_FITTED_CONTEXT = 512
# Share of the available memory the workers may plan to use: the rest is headroom for
# this process, the page cache of the mmapped weights and estimate error.
USABLE_SHARE = 0.8
_F16, _F32 = 2, 4


@dataclass(frozen=True)
class ContextShape:
    """The sizes one worker's contexts are created with.

    `n_ctx`: tokens of the long context (the longest input plus room for a batch).
    `n_batch`: most tokens per `llama_decode` call and per micro-batch. Encoders need
    a whole input in one micro-batch, so theirs is `n_ctx`; causal models decode a
    longer input in several calls over their KV cache, so theirs is the batch budget,
    which keeps compute and output buffers independent of the context length.
    """

    n_ctx: int
    n_batch: int
    n_seq_max: int
    causal: bool


def context_shape(
    config: ModelConfig, header: GGUFInfo, limit: int, *, rank: bool = False
) -> ContextShape:
    """The contexts for inputs of up to `limit` tokens under `config`'s batching.

    A reranker scores each pair from its last call's pooled output, so it always
    decodes in one call (`n_batch = n_ctx`), causal or not.
    """
    budget = config.batching.max_batch_tokens
    n_ctx = max(limit, budget, FLASH_ATTENTION_TILE)
    causal = header.causal_attention
    chunked = causal and not rank
    n_batch = min(n_ctx, max(budget, FLASH_ATTENTION_TILE)) if chunked else n_ctx
    return ContextShape(n_ctx, n_batch, min(config.batching.max_batch_sequences, n_ctx), causal)


@dataclass(frozen=True)
class MemoryEstimate:
    """Upper bounds, in bytes, of what one worker allocates besides the mapped weights.

    `weights_copy` allows for one private copy of the weights: CPU builds repack some
    quantized types for AMX / AVX-512 kernels into anonymous memory, per process.
    """

    kv_cache: int
    compute: int
    outputs: int
    weights_copy: int

    @property
    def per_worker(self) -> int:
        return self.kv_cache + self.compute + self.outputs + self.weights_copy

    def total(self, workers: int, file_size: int) -> int:
        """All workers together; the mapped file is shared, so counted once."""
        return file_size + max(1, workers) * self.per_worker

    def describe(self) -> str:
        return (
            f"{format_bytes(self.per_worker)} per worker (KV cache "
            f"{format_bytes(self.kv_cache)}, compute {format_bytes(self.compute)}, outputs "
            f"{format_bytes(self.outputs)}, weight copy {format_bytes(self.weights_copy)})"
        )


def _int(header: GGUFInfo, key: str, default: int) -> int:
    value = header.metadata.get(f"{header.architecture}.{key}")
    return int(value) if isinstance(value, int) and value > 0 else default


def estimate_memory(header: GGUFInfo, shape: ContextShape) -> MemoryEstimate:
    """What llama.cpp allocates for `shape`, from the header alone, rounded up.

    Measured against llama.cpp's own buffer report (Gemma 3 270M, MiniLM): the KV
    cache is F16, counted for every layer at the full context (sliding-window layers
    hold less, so this bounds it); a causal model's graph ends in the LM head, so its
    compute buffer holds `n_batch` rows of logits, and the output buffer as many;
    plain attention holds a `heads x n_batch x n_ctx` score matrix (and its softmax).
    """
    n_embd = header.n_embd
    n_layer = _int(header, "block_count", 1)
    n_head = _int(header, "attention.head_count", 1)
    n_head_kv = _int(header, "attention.head_count_kv", n_head)
    head_k = _int(header, "attention.key_length", max(1, n_embd // n_head))
    head_v = _int(header, "attention.value_length", head_k)
    n_ff = _int(header, "feed_forward_length", 4 * n_embd)
    n_vocab = max(header.vocab_size, 1)
    n_ctx, n_batch = shape.n_ctx, shape.n_batch
    activations = n_batch * (8 * n_embd + 3 * n_ff) * _F32
    if shape.causal:
        kv = n_ctx * n_layer * n_head_kv * (head_k + head_v) * _F16
        scores = 2 * n_head * n_batch * n_ctx * _F32
        compute = max(n_batch * n_vocab * _F32, scores) + activations
    else:
        kv = 0
        # Flash attention on the long context never materializes the scores; the short
        # plain-attention context holds a tile-sized matrix.
        small = FLASH_ATTENTION_TILE
        scores = 2 * n_head * small * small * _F32
        compute = activations + scores + FLASH_ATTENTION_TILE * (8 * n_embd + 3 * n_ff) * _F32
    outputs_rows = max(n_batch, shape.n_seq_max)
    outputs = outputs_rows * (n_vocab + n_embd) * _F32
    return MemoryEstimate(kv, compute, outputs, header.file_size)


def available_memory() -> int | None:
    """Bytes this process could still allocate: MemAvailable, capped by a cgroup limit."""
    candidates = []
    meminfo = _read("/proc/meminfo")
    for line in (meminfo or "").splitlines():
        if line.startswith("MemAvailable:"):
            candidates.append(int(line.split()[1]) * 1024)
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit, usage = _read(limit_file), _read(usage_file)
        if limit and usage and limit.strip().isdigit() and usage.strip().isdigit():
            room = int(limit) - int(usage)
            if int(limit) < 1 << 60:  # cgroup v1 reports "no limit" as a huge number
                candidates.append(max(0, room))
    return min(candidates) if candidates else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def format_bytes(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


@dataclass(frozen=True)
class FittedContext:
    """The config to load (n_ctx possibly lowered) and what it is estimated to take."""

    config: ModelConfig
    limit: int
    estimate: MemoryEstimate
    available: int | None


def context_limit(config: ModelConfig, header: GGUFInfo) -> int:
    """Most tokens per input: `n_ctx` if set (never above the trained context)."""
    if config.n_ctx is not None and config.n_ctx > header.context_length:
        raise ConfigError(
            f"n_ctx={config.n_ctx} exceeds the model's trained context "
            f"of {header.context_length} tokens"
        )
    return config.n_ctx or header.context_length


def fit_context(
    config: ModelConfig,
    header: GGUFInfo,
    workers: int,
    budget: int | None = None,
    *,
    quiet: bool = False,
) -> FittedContext:
    """Check that `workers` contexts fit; lower a default context until they do.

    `budget`: the memory the workers may use (None: what the machine has available,
    `USABLE_SHARE` of it). An explicit `n_ctx` that cannot fit fails here, with the
    estimate; a default one is halved to a power of two until it fits, with a warning
    (`quiet`: none, for a check before the real load, which warns).
    """
    workers = max(1, workers)
    available = available_memory() if budget is None else budget
    usable = None if available is None else int(available * (USABLE_SHARE if budget is None else 1))
    limit = context_limit(config, header)

    rank = model_kind(header) is ModelKind.RERANK

    def needed(tokens: int) -> MemoryEstimate:
        return estimate_memory(header, context_shape(config, header, tokens, rank=rank))

    estimate = needed(limit)
    if usable is None or estimate.total(workers, header.file_size) <= usable:
        return FittedContext(config, limit, estimate, available)
    where = f"{workers} worker{'s' if workers > 1 else ''}"
    if config.n_ctx is not None:
        raise ConfigError(
            f"model {config.resolved_name!r} with --n-ctx {limit} needs about "
            f"{format_bytes(estimate.total(workers, header.file_size))} for {where} "
            f"({estimate.describe()}), more than the {format_bytes(usable)} available; "
            "lower --n-ctx or --workers, or raise --memory-limit"
        )
    fitted = 1 << (limit.bit_length() - 1)
    if fitted == limit:
        fitted //= 2
    while fitted >= MIN_FITTED_CONTEXT and needed(fitted).total(workers, header.file_size) > usable:
        fitted //= 2
    if fitted < MIN_FITTED_CONTEXT:
        raise ConfigError(
            f"model {config.resolved_name!r} does not fit in {format_bytes(usable)} for "
            f"{where} even with a {MIN_FITTED_CONTEXT}-token context "
            f"({needed(MIN_FITTED_CONTEXT).describe()}); use fewer --workers or a "
            "machine with more memory"
        )
    smaller = needed(fitted)
    if quiet:
        return FittedContext(replace(config, n_ctx=fitted), fitted, smaller, available)
    _log.warning(
        "model %r: its trained context of %d tokens needs about %s for %s, more than the "
        "%s available; serving a %d-token context (%s). Set --n-ctx to choose another.",
        config.resolved_name,
        limit,
        format_bytes(estimate.total(workers, header.file_size)),
        where,
        format_bytes(usable),
        fitted,
        smaller.describe(),
    )
    return FittedContext(replace(config, n_ctx=fitted), fitted, smaller, available)
