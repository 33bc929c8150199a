"""Cross-check with a C load generator (wrk): on 2 cores the Python client of load.py
takes CPU the servers need, so this measures the servers with a client that barely does.

wrk does not validate bodies (load.py does); non-2xx answers are counted. Writes
bench/wrk_results.md. Needs `wrk` (Debian package).

    python bench/wrk_check.py [--rounds 2] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.corpus import short_texts
from bench.load import HERE, build_servers, peer_programs

CONCURRENCY = (1, 16, 64)


def lua_script(texts: list[str]) -> str:
    """One short text per request, cycling through `texts`."""
    return lua_for_bodies([json.dumps({"input": [t], "model": "m"}).encode() for t in texts])


def lua_for_bodies(bodies: list[bytes]) -> str:
    """A wrk script that POSTs `bodies` (JSON) in turn."""
    quoted = ",\n".join(json.dumps(body.decode()) for body in bodies)
    return (
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"local bodies = {{\n{quoted}\n}}\nlocal n = 0\n"
        "request = function()\n  n = n + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])\nend\n"
    )


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": float(p50.group(1)) * scale[p50.group(2)] if p50 else float("nan"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()

    from embellama import EmbeddingEngine, prepare_default_model

    model = prepare_default_model().path
    texts = short_texts(300, seed=7)
    with EmbeddingEngine.from_path(model, n_threads=2) as engine:
        engine.embed(texts[:20])
        singles, limits = [], []
        for _ in range(3):
            started = time.perf_counter()
            for text in texts[:150]:
                engine.embed(text)
            singles.append((time.perf_counter() - started) / 150 * 1000)
            started = time.perf_counter()
            engine.embed(texts)  # the engine limit: every text in one call
            limits.append(len(texts) / (time.perf_counter() - started))
        single_ms, limit = statistics.median(singles), statistics.median(limits)
    llama_server, lcp = peer_programs()
    servers = build_servers(model, sys.executable, lcp, llama_server)
    results: dict[str, dict[int, list[dict[str, float]]]] = {
        s.name: {c: [] for c in CONCURRENCY} for s in servers
    }
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "post.lua"
        script.write_text(lua_script(texts))
        try:
            for server in servers:
                server.start(Path(scratch))
            for round_index in range(args.rounds):
                order = servers if round_index % 2 == 0 else servers[::-1]
                for connections in CONCURRENCY:
                    for server in order:
                        time.sleep(1)
                        result = run_wrk(
                            server.url + "/v1/embeddings", script, connections, args.seconds
                        )
                        results[server.name][connections].append(result)
                        print(server.name, connections, result, flush=True)
        finally:
            for server in servers:
                server.stop()
    lines = [
        "# Cross-check with wrk (C client, one thread)",
        "",
        f"Machine: {machine()}. Same GGUF, 2 threads per server, one short text (8-40 words) per "
        f"request, {args.seconds:g} s per measurement, {args.rounds} rounds alternated; medians. "
        f"embellama's in-process engine on these texts (2 threads, medians of 3): one text "
        f"per call {single_ms:.2f} ms, all {len(texts)} in one call {limit:.1f} texts/s (the "
        "engine limit). Saturation = best of c16/c64 req/s over that limit; c1 overhead = c1 "
        "p50 minus the single-text latency.",
        "",
        "| server | c1 req/s | c1 p50 ms | c16 req/s | c16 p50 ms | c64 req/s | c64 p50 ms "
        "| saturation | c1 overhead ms | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_c in results.items():
        cells = []
        for c in CONCURRENCY:
            cells += [
                f"{statistics.median(r['rps'] for r in by_c[c]):.1f}",
                f"{statistics.median(r['p50_ms'] for r in by_c[c]):.2f}",
            ]
        errors = sum(r["non_2xx"] for runs in by_c.values() for r in runs)
        best = max(statistics.median(r["rps"] for r in by_c[c]) for c in (16, 64))
        overhead = statistics.median(r["p50_ms"] for r in by_c[1]) - single_ms
        cells += [f"{100 * best / limit:.0f} %", f"{overhead:+.2f}"]
        lines.append(f"| {name} | {' | '.join(cells)} | {errors:.0f} |")
    (HERE / "wrk_results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
