"""`embellama embed`: vectors for texts on the command line or a JSONL file.

JSONL input: one JSON string per line, or an object with "text" (and optionally "id").
Output: one JSON object per input with index, id, token count and embedding. With
`--cache-url` (Redis) a re-run of the same file reads its vectors back instead of
computing them; `--cache-size` alone caches repeats within one run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from embellama.cli.options import (
    CACHE_OPTIONS,
    MODEL_OPTIONS,
    add_options,
    cache_from,
    model_config_from,
    resolve,
)
from embellama.config import EngineConfig, Truncation
from embellama.engine import EmbeddingEngine
from embellama.errors import InputError

_CHUNK = 256


def register(commands: Any) -> None:
    parser = commands.add_parser("embed", help="Embed texts given as arguments or in a JSONL file.")
    parser.add_argument("texts", nargs="*", help="Texts to embed.")
    parser.add_argument("--input", type=Path, help="JSONL file of texts ('-' for stdin).")
    parser.add_argument("--output", type=Path, help="Write JSONL here instead of stdout.")
    parser.add_argument(
        "--dimensions",
        type=int,
        default=None,
        help="Keep the first N dimensions (Matryoshka), renormalized.",
    )
    parser.add_argument(
        "--truncate",
        choices=[t.value for t in Truncation],
        default="none",
        help="Cut inputs longer than the context at the end or start (default: fail).",
    )
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    add_options(parser, MODEL_OPTIONS, "model")
    add_options(parser, CACHE_OPTIONS, "cache (off unless --cache-size or --cache-url is given)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.texts) == bool(args.input):
        raise InputError("give texts as arguments or --input FILE, not both and not neither")
    records = (
        _read_jsonl(args.input) if args.input else iter([{"text": text} for text in args.texts])
    )
    total = _count_lines(args.input) if args.input and str(args.input) != "-" else None
    cache_values = resolve(args, CACHE_OPTIONS)
    if args.cache_size is None and not cache_values["cache_url"]:
        cache_values["cache_size"] = 0  # the server caches by default; a one-off job does not
    config = EngineConfig(models=(model_config_from(resolve(args, MODEL_OPTIONS)),))
    with EmbeddingEngine(config, cache=cache_from(cache_values)) as engine:
        out = args.output.open("w") if args.output else sys.stdout
        try:
            show = not args.no_progress and (args.output is not None) and sys.stderr.isatty()
            with tqdm(total=total, unit="text", disable=not show, file=sys.stderr) as bar:
                hits, inputs = _embed_records(engine, records, out, args, bar)
        finally:
            if args.output:
                out.close()
    if engine.engine.cache is not None:
        print(f"embellama: cache: {hits} hits of {inputs} inputs", file=sys.stderr)
    return 0


def _embed_records(
    engine: EmbeddingEngine,
    records: Iterator[dict[str, Any]],
    out: TextIO,
    args: argparse.Namespace,
    bar: tqdm,
) -> tuple[int, int]:
    """Write every record's line; return (cache hits, inputs)."""
    index = hits = 0
    while chunk := list(islice(records, _CHUNK)):
        result = engine.embed_with_details(
            [record["text"] for record in chunk], dimensions=args.dimensions, truncate=args.truncate
        )
        for record, vector, tokens in zip(chunk, result.vectors, result.token_counts, strict=True):
            line: dict[str, Any] = {"index": index, "tokens": tokens, "embedding": vector.tolist()}
            if "id" in record:
                line["id"] = record["id"]
            out.write(json.dumps(line) + "\n")
            index += 1
        hits += result.cache_hits
        bar.update(len(chunk))
    return hits, index


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    handle = sys.stdin if str(path) == "-" else path.open()
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if isinstance(value, str):
                value = {"text": value}
            if not isinstance(value, dict) or not isinstance(value.get("text"), str):
                raise InputError(
                    f"{path}:{number}: expected a JSON string or an object with 'text'"
                )
            yield value


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())
