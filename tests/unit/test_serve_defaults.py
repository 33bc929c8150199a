"""`embellama serve`'s sizing defaults: workers, threads per worker, batch budget."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from embellama.cli.options import SERVING_MAX_BATCH_TOKENS, default_workers
from embellama.cli.plan import ModelPlan, load_plan
from embellama.cli.serve import parse_serve_args
from embellama.config import DEFAULT_MAX_BATCH_TOKENS

CORES = os.cpu_count() or 1


def _plan(minilm_gguf: Path, *flags: str, config: Path | None = None) -> ModelPlan:
    args = parse_serve_args(["--model-path", str(minilm_gguf), *flags])
    return load_plan(args, config).models[0]


def test_cpu_default_is_two_workers_splitting_the_cores(minilm_gguf: Path) -> None:
    plan = _plan(minilm_gguf)
    workers = min(CORES, 2)
    assert plan.limits.workers == default_workers(0) == workers
    assert plan.config.n_threads == max(1, CORES // workers)
    expected = SERVING_MAX_BATCH_TOKENS if workers > 1 else DEFAULT_MAX_BATCH_TOKENS
    assert plan.config.batching.max_batch_tokens == expected


@pytest.mark.parametrize(
    ("flags", "workers", "tokens"),
    [
        (("--workers", "1"), 1, DEFAULT_MAX_BATCH_TOKENS),
        (("--n-gpu-layers", "-1"), 1, DEFAULT_MAX_BATCH_TOKENS),  # weights per worker in VRAM
        (("--workers", "2", "--max-batch-tokens", "300"), 2, 300),
        (("--workers", "3"), 3, SERVING_MAX_BATCH_TOKENS),
    ],
)
def test_explicit_settings_and_gpu_keep_their_own_sizing(
    minilm_gguf: Path, flags: tuple[str, ...], workers: int, tokens: int
) -> None:
    plan = _plan(minilm_gguf, *flags)
    assert plan.limits.workers == workers
    assert plan.config.batching.max_batch_tokens == tokens
    assert plan.config.n_threads == max(1, CORES // workers)


def test_a_config_file_model_splits_the_cores_between_its_workers(
    minilm_gguf: Path, tmp_path: Path
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(f'[[models]]\npath = "{minilm_gguf}"\nworkers = 2\n')
    plan = _plan(minilm_gguf, config=config)
    assert plan.limits.workers == 2
    assert plan.config.n_threads == max(1, CORES // 2)  # not every core in each worker
