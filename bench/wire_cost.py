"""Per-request CPU of the embeddings wire path: parse (bytes -> the typed request and its
options, the functions the route calls) and encode (a fixed result -> body bytes and
headers), in-process, for one short text (the c16 body) and for 32 texts.

Run against a tree by putting its sources first on the path; `--compare OLD NEW` runs
both trees in subprocesses and prints the ratio:

    git -C /work/main worktree add /tmp/wire-before 944e90d
    python bench/wire_cost.py --compare /tmp/wire-before/src src
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from embellama.results import EmbeddingResult, Timings

N = 20_000
ROUNDS = 5
SHORT = "a short sentence of ten words or so"
BODIES = {
    "c16": orjson.dumps({"input": SHORT, "model": "m"}),
    "32 texts": orjson.dumps({"input": [f"{SHORT} {i}" for i in range(32)], "model": "m"}),
}


def _result(n: int) -> EmbeddingResult:
    vectors = np.random.default_rng(0).standard_normal((n, 384)).astype(np.float32)
    return EmbeddingResult(
        model="m",
        vectors=vectors,
        token_counts=(12,) * n,
        truncated=(False,) * n,
        timings=Timings(0.001, 0.002, 0.003),
        cached=(False,) * n,
    )


def _functions() -> tuple[Callable[[bytes], Any], Callable[[EmbeddingResult, Any], Any]]:
    """parse(bytes) -> (request, options); encode(result, request) -> (bytes, headers)."""
    try:
        from embellama.server.body import max_body_values, parse_json_object
        from embellama.server.encoding import embedding_headers, encode_embeddings
        from embellama.server.wire.embeddings import parse_embeddings_request
    except ImportError:
        return _before()
    most = max_body_values(2048)

    def parse(body: bytes) -> Any:
        parsed = parse_embeddings_request(
            parse_json_object(body, most), max_inputs=2048, max_instruction_length=2048
        )
        return parsed, parsed.options(use_cache=True)

    def encode(result: EmbeddingResult, parsed: Any) -> Any:
        request = parsed[0]
        body = encode_embeddings(result, request.encoding_format)
        return body, embedding_headers(result, request.items)

    return parse, encode


def _before() -> tuple[Callable[[bytes], Any], Callable[[EmbeddingResult, Any], Any]]:
    """944e90d: the hand parser; the route built the options and headers itself."""
    from embellama.server.schemas import (
        max_body_values,
        parse_embeddings_request,
        parse_json_object,
    )

    from embellama.options import EmbedOptions
    from embellama.server.encoding import encode_embeddings
    from embellama.server.routes.embeddings import (  # type: ignore[attr-defined]
        _prefix_header,
        _timing_headers,
    )

    most = max_body_values(2048)

    def parse(body: bytes) -> Any:
        p = parse_embeddings_request(
            parse_json_object(body, most), max_inputs=2048, max_instruction_length=2048
        )
        options = EmbedOptions(
            p.normalize,
            p.dimensions,
            p.truncate,
            p.use_cache,
            p.input_type,
            p.instruction,
            p.chunk_overlap,
        )
        return p, options

    def encode(result: EmbeddingResult, parsed: Any) -> Any:
        request = parsed[0]
        body = encode_embeddings(result, request.encoding_format)
        return body, {**_timing_headers(result), **_prefix_header(result.prefix, request.items)}

    return parse, encode


def _best_us(work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(N):
            work()
        best = min(best, time.perf_counter() - started)
    return best / N * 1e6


def measure() -> dict[str, dict[str, float]]:
    parse, encode = _functions()
    out = {}
    for name, body in BODIES.items():
        parsed = parse(body)
        result = _result(len(parsed[0].items))
        parse_us = _best_us(functools.partial(parse, body))
        encode_us = _best_us(functools.partial(encode, result, parsed))
        out[name] = {"parse": parse_us, "encode": encode_us, "total": parse_us + encode_us}
    return out


def _run(src: str) -> dict[str, dict[str, float]]:
    done = subprocess.run(
        [sys.executable, __file__, "--json"],
        env={"PYTHONPATH": src, "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    answer: dict[str, dict[str, float]] = json.loads(done.stdout)
    return answer


def _best(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    best = {
        case: {part: min(run[case][part] for run in runs) for part in ("parse", "encode")}
        for case in BODIES
    }
    for parts in best.values():
        parts["total"] = parts["parse"] + parts["encode"]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--compare", nargs=2, metavar=("OLD_SRC", "NEW_SRC"))
    parser.add_argument("--repeat", type=int, default=3, help="alternated runs per tree")
    parser.add_argument("--out", help="also write the table to this Markdown file")
    args = parser.parse_args()
    if args.compare is None:
        result = measure()
        print(json.dumps(result) if args.json else result)
        return
    # Alternated and the best of each kept: the machine is shared, noise only adds time.
    runs: list[list[dict[str, dict[str, float]]]] = [[], []]
    for _ in range(args.repeat):
        for side, src in enumerate(args.compare):
            runs[side].append(_run(src))
    before, after = (_best(side) for side in runs)
    rows = [
        f"| {case} | {part} | {before[case][part]:.2f} | {after[case][part]:.2f} | "
        f"{after[case][part] / before[case][part]:.3f} |"
        for case in BODIES
        for part in ("parse", "encode", "total")
    ]
    header = [
        "| case | stage | before µs | after µs | after / before |",
        "|---|---|---:|---:|---:|",
    ]
    table = "\n".join([*header, *rows])
    print(table)
    if args.out:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from bench.batch_budget import machine

        Path(args.out).write_text(
            "# Per-request CPU of parse + encode on the embeddings route\n\n"
            f"Machine: {machine()}. In-process, {N:,} iterations per timing, best of "
            f"{ROUNDS}; the two trees alternated {args.repeat} times, best run kept.\n"
            f"before = `{args.compare[0]}`, after = `{args.compare[1]}`.\n\n"
            f"Reproduce: `python bench/wire_cost.py --compare OLD/src src --out {args.out}`\n\n"
            + table
            + "\n"
        )


if __name__ == "__main__":
    main()
