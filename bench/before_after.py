"""ABBA comparison of the server at two commits: did a change cost throughput?

Checks out `--before` (a commit) into a temporary worktree and serves it with this
checkout's virtualenv next to the current code, on the same GGUF and threads. Rounds
alternate A B B A; the c16 (one short text per request) and 32-texts/request scenarios
of bench/load.py run per round; medians and after/before ratios go to
bench/before_after.md.

    python bench/before_after.py --before 8faa5da [--rounds 6]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.corpus import mixed_texts, short_texts
from bench.load import Server, embellama_command, run_closed
from embellama import prepare_default_model

OUT = Path(__file__).resolve().parent
ROOT = OUT.parent


def _server(name: str, source: Path, model: Path, port: int) -> Server:
    """The checkout at `source` (its own sources first on the path)."""
    command = ["env", f"PYTHONPATH={source / 'src'}", *embellama_command(model, port)]
    return Server(name, command, port)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="commit to compare against")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    model = prepare_default_model().path
    shorts = [[t] for t in short_texts(600, seed=7)]
    batches = [mixed_texts(32, seed=i) for i in range(24)]
    scenarios = {
        "1 text/request, 16 clients": lambda s: run_closed(s, shorts, 16),
        "32 texts/request, 4 clients": lambda s: run_closed(s, batches, 4),
    }
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
            check=True,
            capture_output=True,
        )
        servers = [
            _server(f"before ({args.before})", worktree, model, 18301),
            _server("after (this checkout)", ROOT, model, 18302),
        ]
        samples = {(name, s.name): [] for name in scenarios for s in servers}
        try:
            for server in servers:
                server.start(Path(tmp))
            for round_index in range(args.rounds):
                order = servers if round_index % 2 == 0 else servers[::-1]  # A B, B A, ...
                for name, scenario in scenarios.items():
                    for server in order:
                        outcome = scenario(server)
                        assert outcome.errors == 0, (server.name, name, outcome.errors)
                        samples[(name, server.name)].append(outcome.throughput)
                        print(
                            f"round {round_index}: {name}: {server.name} {outcome.throughput:.1f}"
                        )
        finally:
            for server in servers:
                server.stop()
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                check=False,
            )
    lines = [
        "# Server throughput before and after a change (ABBA)",
        "",
        f"Machine: {machine()}. Same GGUF (all-MiniLM-L6-v2 F16), serve's defaults (2 workers "
        f"x 1 thread on 2 cores) with the cache off, loopback, Python httpx client "
        f"(bench/load.py). {args.rounds} rounds, order "
        "A B / B A alternating; embeddings per second, median (min-max).",
        "",
        f"Reproduce: `python bench/before_after.py --before {args.before} --rounds {args.rounds}`",
        "",
        "| scenario | before | after | after / before |",
        "|---|---:|---:|---:|",
    ]
    before, after = (s.name for s in servers)
    for name in scenarios:
        b, a = samples[(name, before)], samples[(name, after)]
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        lines.append(
            f"| {name} | {statistics.median(b):.1f} ({min(b):.0f}-{max(b):.0f}) | "
            f"{statistics.median(a):.1f} ({min(a):.0f}-{max(a):.0f}) | "
            f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )
    (OUT / "before_after.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
