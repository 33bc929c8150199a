"""`embellama serve`'s sizing defaults: workers, threads per worker, batch budget."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from embellama.cli.options import SERVING_MAX_BATCH_TOKENS, default_workers
from embellama.cli.plan import load_plan
from embellama.cli.serve import parse_serve_args
from embellama.config import DEFAULT_MAX_BATCH_TOKENS, ModelSpec

CORES = os.cpu_count() or 1


def _plan(minilm_gguf: Path, *flags: str, config: Path | None = None) -> ModelSpec:
    # A config file's [[models]] name their own paths (a --model-path beside them is refused).
    model = [] if config else ["--model-path", str(minilm_gguf)]
    args = parse_serve_args([*model, *flags])
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


def test_several_models_split_the_cores_between_all_their_workers(
    minilm_gguf: Path, tmp_path: Path
) -> None:
    """Two models on N cores: 2 default workers in all, not 2 each, and threads from the
    cores over every model's workers, so workers x threads stays within the cores."""
    config = tmp_path / "serve.toml"
    entry = '[[models]]\nname = "{}"\npath = "{}"\n'
    config.write_text(entry.format("a", minilm_gguf) + entry.format("b", minilm_gguf))
    plans = load_plan(parse_serve_args([]), config).models
    workers = [plan.limits.workers for plan in plans]
    assert workers == [max(1, default_workers(0) // 2)] * 2
    threads = sum((plan.config.n_threads or 0) * plan.limits.workers for plan in plans)
    assert threads <= max(CORES, sum(workers)), (workers, [p.config.n_threads for p in plans])


def test_explicit_workers_of_one_model_count_in_the_others_threads(
    minilm_gguf: Path, tmp_path: Path
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[[models]]\nname = "a"\npath = "{minilm_gguf}"\nworkers = 3\n'
        f'[[models]]\nname = "b"\npath = "{minilm_gguf}"\nworkers = 1\n'
    )
    plans = load_plan(parse_serve_args([]), config).models
    assert [plan.limits.workers for plan in plans] == [3, 1]
    assert all(plan.config.n_threads == max(1, CORES // 4) for plan in plans)


def test_server_workers_apply_to_entries_without_their_own(
    minilm_gguf: Path, tmp_path: Path
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(f'[[models]]\npath = "{minilm_gguf}"\n')
    assert _plan(minilm_gguf, "--workers", "3", config=config).limits.workers == 3
