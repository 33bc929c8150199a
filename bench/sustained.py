"""60 s of short requests at concurrency 16 against `embellama serve` with its defaults,
sampling the RSS of the server and each child process every second (leak check).
Writes bench/sustained.md.

    python bench/sustained.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.load import HERE, Server, _tree, build_servers, rss_of, sustained


def rss_by_process(server: Server) -> dict[int, float]:
    assert server.process is not None
    return {pid: rss_of(pid) for pid in _tree(server.process.pid)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    from embellama import prepare_default_model

    model = prepare_default_model().path
    server = build_servers(model, sys.executable, lcp_python=None, llama_server=None)[0]
    with tempfile.TemporaryDirectory() as logs:
        server.start(Path(logs))
        try:
            before = rss_by_process(server)
            samples = sustained(server, args.seconds)
            after = rss_by_process(server)
        finally:
            server.stop()
    first, last = samples[min(2, len(samples) - 1)][1], samples[-1][1]
    lines = [
        "# Sustained load, embellama defaults (1 worker x 2 threads)",
        "",
        f"Machine: {machine()}. {args.seconds:g} s of one short text per request at concurrency 16.",
        "",
        f"Total RSS (server and children): {first:.0f} MB at 2 s, {last:.0f} MB at "
        f"{samples[-1][0]:.0f} s ({last - first:+.0f} MB); peak {max(s for _, s in samples):.0f} MB.",
        "",
        "| process (pid) | RSS before, MB | RSS after, MB |",
        "|---|---:|---:|",
        *[
            f"| {pid} | {before.get(pid, 0):.0f} | {after.get(pid, 0):.0f} |"
            for pid in sorted(set(before) | set(after))
        ],
        "",
        "The largest process is the worker (the model's weights and llama.cpp buffers); the",
        "server process holds only the vocabulary; the smallest is multiprocessing's resource tracker.",
        "",
    ]
    (HERE / "sustained.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
