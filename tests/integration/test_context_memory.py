"""Contexts are sized from the GGUF header before llama.cpp allocates them.

The estimate (model/memory.py) must bound what llama.cpp really allocates, or a
default that "fits" still crashes a worker; and a default that does not fit must be
lowered, an explicit one refused, each with one line saying what to change.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from embellama import ConfigError, ModelConfig, read_gguf_info
from embellama.config import InferenceEngine
from embellama.model.loaded import LoadedModel
from embellama.model.memory import MemoryEstimate, context_shape, estimate_memory, fit_context

_BUFFER = re.compile(r"(KV|compute|output) buffer size =\s+([\d.]+) MiB")
_MiB = 1 << 20


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _allocated(config: ModelConfig) -> tuple[dict[str, float], MemoryEstimate]:
    """What llama.cpp reports allocating for `config`, by kind (bytes), and our estimate."""
    native = logging.getLogger("embellama.llama_cpp")
    handler, level = _Lines(), native.level
    native.addHandler(handler)
    native.setLevel(logging.DEBUG)
    try:
        model = LoadedModel(config)
        model.close()
    finally:
        native.removeHandler(handler)
        native.setLevel(level)
    sizes: dict[str, list[float]] = {"KV": [], "compute": [], "output": []}
    for line in handler.lines:
        match = _BUFFER.search(line)
        if match:
            sizes[match.group(1)].append(float(match.group(2)) * _MiB)
    # KV and compute buffers add up over contexts and caches; the output buffer is
    # per context and regrown on demand, so the largest one is what one decode holds.
    return {
        "KV": sum(sizes["KV"]),
        "compute": sum(sizes["compute"]),
        "output": max(sizes["output"], default=0.0),
    }, model.memory


@pytest.mark.parametrize("n_ctx", [None, 4096])
def test_the_estimate_bounds_what_llama_cpp_allocates(
    minilm_gguf: Path, gemma3_gguf: Path, n_ctx: int | None
) -> None:
    configs = [
        # What llama.cpp allocates: the default model pinned to it (auto runs it on ONNX).
        ModelConfig(path=minilm_gguf, engine=InferenceEngine.LLAMA_CPP),
        ModelConfig(path=gemma3_gguf, n_ctx=n_ctx or 2048, allow_unverified_architecture=True),
    ]
    for config in configs:
        allocated, estimate = _allocated(config)
        assert allocated["compute"] > 0, config.path
        assert estimate.kv_cache >= allocated["KV"], config.path
        assert estimate.compute >= allocated["compute"], config.path
        assert estimate.outputs >= allocated["output"], config.path
        # An upper bound, but not a wild one: within 2x of the real buffers.
        real = allocated["KV"] + allocated["compute"]
        assert estimate.kv_cache + estimate.compute <= 2 * real + 64 * _MiB, config.path


def test_a_causal_model_s_buffers_do_not_grow_with_its_context(gemma3_gguf: Path) -> None:
    """The 32K context that needed a 33 GB compute buffer: only the KV cache is linear
    in the context now; compute and outputs are sized to the batch budget."""
    header = read_gguf_info(gemma3_gguf)
    config = ModelConfig(path=gemma3_gguf, allow_unverified_architecture=True)
    short, full = (
        estimate_memory(header, context_shape(config, header, tokens)) for tokens in (2048, 32768)
    )
    assert full.compute < 2 * short.compute
    assert full.outputs == short.outputs
    # F16 K and V for every layer at the full context (Gemma 3 270M: 18 layers, one
    # 256-wide KV head); its sliding-window layers really hold less (an upper bound).
    assert full.kv_cache == 32768 * 18 * 1 * (256 + 256) * 2
    assert full.per_worker < 2 << 30


def test_a_default_context_that_does_not_fit_is_lowered_with_one_warning(
    gemma3_gguf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    header = read_gguf_info(gemma3_gguf)
    config = ModelConfig(path=gemma3_gguf, allow_unverified_architecture=True)
    budget = 2 << 30  # 2 GiB for two workers: the 32K context needs ~2.5 GiB
    with caplog.at_level(logging.WARNING, logger="embellama.memory"):
        fitted = fit_context(config, header, workers=2, budget=budget)
    assert fitted.limit < header.context_length
    assert fitted.limit & (fitted.limit - 1) == 0  # a power of two
    assert fitted.config.n_ctx == fitted.limit
    assert fitted.estimate.total(2, header.file_size) <= budget
    # The largest such context: twice it would not have fitted.
    twice = estimate_memory(header, context_shape(config, header, 2 * fitted.limit))
    assert twice.total(2, header.file_size) > budget
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "--n-ctx" in warnings[0] and str(fitted.limit) in warnings[0]


def test_an_explicit_context_that_cannot_fit_fails_naming_the_estimate(gemma3_gguf: Path) -> None:
    header = read_gguf_info(gemma3_gguf)
    config = ModelConfig(path=gemma3_gguf, n_ctx=32768, allow_unverified_architecture=True)
    with pytest.raises(ConfigError) as caught:
        fit_context(config, header, workers=2, budget=1 << 30)
    message = str(caught.value)
    assert "\n" not in message
    assert "--n-ctx 32768" in message and "GiB" in message and "available" in message
    # The same context with room to spare is accepted unchanged.
    assert fit_context(config, header, workers=2, budget=16 << 30).config is config


def test_an_encoder_always_fits_and_keeps_its_context(minilm_gguf: Path) -> None:
    header = read_gguf_info(minilm_gguf)
    fitted = fit_context(ModelConfig(path=minilm_gguf), header, workers=2, budget=1 << 30)
    assert fitted.limit == header.context_length == 512
    assert fitted.estimate.kv_cache == 0  # encoders keep no KV cache


def test_only_unquantized_weights_are_repacked(minilm_gguf: Path, gemma3_gguf: Path) -> None:
    """Repacking speeds F16 kernels up, but gives each worker a private copy of quantized
    weights (and segfaults on Q4_K with AMX): quantized files stay mapped and shared."""
    assert not read_gguf_info(minilm_gguf).quantized
    assert read_gguf_info(gemma3_gguf).quantized
    for path, repacked in ((minilm_gguf, True), (gemma3_gguf, False)):
        config = ModelConfig(path=path, n_ctx=512, allow_unverified_architecture=True)
        model = LoadedModel(config, inference=False)
        try:
            assert model._native.params.repack_weights is repacked
        finally:
            model.close()
