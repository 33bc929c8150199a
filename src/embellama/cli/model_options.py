"""Command-line flags that describe one model, shared by every subcommand that loads one."""

from __future__ import annotations

import argparse
from pathlib import Path

from embellama.config import (
    DEFAULT_MAX_BATCH_SEQUENCES,
    DEFAULT_MAX_BATCH_TOKENS,
    BatchingConfig,
    ModelConfig,
    Normalization,
    Pooling,
)
from embellama.default_model import DEFAULT_MODEL_NAME, require_default_model


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model-path",
        type=Path,
        default=None,
        help=f"GGUF file to load (default: the built-in {DEFAULT_MODEL_NAME}).",
    )
    group.add_argument(
        "--model-name", default=None, help="Name the model answers to (default: the file name)."
    )
    group.add_argument(
        "--pooling",
        choices=[p.value for p in Pooling],
        default=None,
        help="Override the pooling in the GGUF header (default: the header's).",
    )
    group.add_argument(
        "--normalization",
        choices=[n.value for n in Normalization],
        default="l2",
        help="How vectors are scaled (default: l2, what cosine search expects).",
    )
    group.add_argument("--norm-p", type=float, default=2.0, help="p for --normalization p_norm.")
    group.add_argument(
        "--threads", type=int, default=None, help="CPU threads for llama.cpp (default: all cores)."
    )
    group.add_argument(
        "--n-ctx",
        type=int,
        default=None,
        help="Max tokens per input (default and upper bound: the model's context).",
    )
    group.add_argument(
        "--n-gpu-layers",
        type=int,
        default=0,
        help="Layers to offload to a GPU build of llama.cpp (-1 = all).",
    )
    group.add_argument(
        "--max-batch-tokens",
        type=int,
        default=DEFAULT_MAX_BATCH_TOKENS,
        help="Token budget of one llama.cpp decode. On CPU, larger is not faster: "
        "attention cost grows with the whole batch (see bench/batch_budget.md). "
        f"Default {DEFAULT_MAX_BATCH_TOKENS}.",
    )
    group.add_argument(
        "--max-batch-sequences",
        type=int,
        default=DEFAULT_MAX_BATCH_SEQUENCES,
        help=f"Most inputs in one decode (default {DEFAULT_MAX_BATCH_SEQUENCES}).",
    )


def model_config_from(args: argparse.Namespace) -> ModelConfig:
    """Build the `ModelConfig`; the default model is only required when no path is given."""
    path = args.model_path or require_default_model()
    name = args.model_name or (DEFAULT_MODEL_NAME if args.model_path is None else None)
    return ModelConfig(
        path=path,
        name=name,
        pooling=Pooling.parse(args.pooling) if args.pooling else None,
        normalization=Normalization.parse(args.normalization),
        norm_p=args.norm_p,
        n_threads=args.threads,
        n_ctx=args.n_ctx,
        n_gpu_layers=args.n_gpu_layers,
        batching=BatchingConfig(args.max_batch_tokens, args.max_batch_sequences),
    )
