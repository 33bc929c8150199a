"""`embellama inspect MODEL.gguf`: header facts without loading weights."""

from __future__ import annotations

import argparse
import json
from typing import Any

from embellama.config import ModelKind
from embellama.errors import ModelFileError
from embellama.model.architectures import check_architecture, model_kind
from embellama.model.gguf import file_sha256, read_gguf_info
from embellama.model.loaded import default_pooling


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "inspect", help="Show a GGUF model's architecture, dims, context, pooling."
    )
    parser.add_argument("path", help="Path to a .gguf file.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    info = read_gguf_info(args.path)
    kind = model_kind(info)
    verdict = "verified"
    try:
        if not check_architecture(info, kind, allow_unverified=True):
            verdict = "unverified (serve with --allow-unverified-architecture)"
    except ModelFileError as exc:
        verdict = f"refused: {exc}"
    facts = {
        "path": str(info.path),
        "architecture": info.architecture,
        "kind": kind.value,
        "support": verdict,
        "name": info.name,
        "dimensions": info.n_embd,
        "context_length": info.context_length,
        "pooling": "rank" if kind is ModelKind.RERANK else default_pooling(info).value,
        "pooling_in_header": info.pooling_type,
        "causal_attention": info.causal_attention,
        "tokenizer": info.tokenizer_model,
        "vocab_size": info.vocab_size,
        "tensors": info.n_tensors,
        "gguf_version": info.version,
        "file_size": info.file_size,
        "sha256": file_sha256(info.path),
    }
    if args.json:
        print(json.dumps(facts))
    else:
        width = max(map(len, facts))
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")
    return 0
