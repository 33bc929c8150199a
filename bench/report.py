"""Turn bench/results.json into bench/results.md and PNG plots: medians and ratios.

python bench/report.py
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

HERE = Path(__file__).resolve().parent
OURS = "embellama (defaults)"  # replaced by --ours


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| scenario | server | texts/s | p50 ms | p99 ms | errors | unnormalized |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for scenario, servers in results["scenarios"].items():
        for name, runs in servers.items():
            lines.append(
                f"| {scenario} | {name} | {_median(runs, 'throughput'):.1f} | {_median(runs, 'p50_ms'):.1f} | "
                f"{_median(runs, 'p99_ms'):.1f} | {sum(r['errors'] for r in runs)} | "
                f"{sum(r['unnormalized'] for r in runs)} |"
            )
    return lines


def _best_llama_server(servers: dict[str, list[dict[str, Any]]]) -> tuple[str, float]:
    peers = {
        n: _median(r, "throughput") for n, r in servers.items() if n.startswith("llama-server")
    }
    name = max(peers, key=lambda n: peers[n])
    return name, peers[name]


def _targets(results: dict[str, Any]) -> list[str]:
    sc = results["scenarios"]
    rows = ["| target | measured | met |", "|---|---|:---:|"]

    def throughput(scenario: str, server: str) -> float:
        return _median(sc[scenario][server], "throughput")

    def add(target: str, measured: str, ok: bool) -> None:
        rows.append(f"| {target} | {measured} | {'yes' if ok else '**no**'} |")

    c16 = "short, concurrency 16"
    peer, peer_tp = _best_llama_server(sc[c16])
    ratio = throughput(c16, OURS) / peer_tp
    add("c16 short ≥ 1.15× best llama-server", f"{ratio:.2f}× ({peer})", ratio >= 1.15)
    lcp = throughput(c16, "llama-cpp-python server")
    add(
        "c16 short ≥ 3× llama-cpp-python server",
        f"{throughput(c16, OURS) / lcp:.2f}×",
        throughput(c16, OURS) / lcp >= 3,
    )
    for scenario in ("32 texts/request, concurrency 4", "~200 tokens, concurrency 4"):
        peer, peer_tp = _best_llama_server(sc[scenario])
        ratio = throughput(scenario, OURS) / peer_tp
        add(f"{scenario} ≥ 1.1× best llama-server", f"{ratio:.2f}× ({peer})", ratio >= 1.1)
    single = 1000 / results["engine_limit"]["embellama engine, one text per call"]
    p50 = _median(sc["short, concurrency 1"][OURS], "p50_ms")
    add(
        "c1 p50 ≤ engine single-text latency + 1 ms",
        f"{p50:.2f} ms vs {single:.2f} + 1 ms",
        p50 <= single + 1,
    )
    ceiling = max(results["engine_limit"].values())
    saturated = max(throughput(s, OURS) for s in sc)
    add(
        "saturation ≥ 90 % of the engine limit",
        f"{saturated:.0f} / {ceiling:.0f} texts/s = {saturated / ceiling:.0%}",
        saturated >= 0.9 * ceiling,
    )
    alone = _median(sc["short queries alone, concurrency 8"][OURS], "p99_ms")
    mixed = _median(sc["short queries + bulk"][OURS], "p99_ms")
    add(
        "mixed: short p99 ≤ 3× p99 without bulk",
        f"{mixed:.1f} ms vs {alone:.1f} ms = {mixed / alone:.2f}×",
        mixed <= 3 * alone,
    )
    start = results["startup_seconds"][OURS]
    add("start-up < 10 s (process start to first good response)", f"{start:.2f} s", start < 10)
    rss = results["rss_mb_after"][OURS]
    bound = 2 * 44 + 150
    add(
        "RSS < 2× model file + 150 MB per worker",
        f"{rss:.0f} MB for server + resource tracker + 1 worker together (bound {bound} MB per worker)",
        rss < bound,
    )
    sustained = next(iter(results["sustained"].values()))
    first, last = sustained[2][1], sustained[-1][1]
    add(
        "flat RSS over the sustained run (2-worker config, see notes)",
        f"{first:.0f} → {last:.0f} MB over {sustained[-1][0]:.0f} s",
        last - first < 0.05 * first,
    )
    return rows


def _plots(results: dict[str, Any]) -> list[str]:
    sc = results["scenarios"]
    names = list(next(iter(sc.values())))
    concurrency = [1, 16, 64]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in names:
        ax.plot(
            concurrency,
            [_median(sc[f"short, concurrency {c}"][name], "throughput") for c in concurrency],
            marker="o",
            label=name,
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients (one short text per request)")
    ax.set_ylabel("texts / s (median)")
    ax.set_title(results["machine"], fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "throughput_vs_concurrency.png", dpi=110)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in names:
        latencies = np.sort(
            np.concatenate([r["latencies_ms"] for r in sc["short, concurrency 16"][name]])
        )
        ax.plot(latencies, np.linspace(0, 1, len(latencies)), label=name)
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (short texts, concurrency 16)")
    ax.set_ylabel("fraction of requests")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "latency_cdf_c16.png", dpi=110)
    return [
        "![throughput vs concurrency](throughput_vs_concurrency.png)",
        "",
        "![latency CDF at concurrency 16](latency_cdf_c16.png)",
    ]


def main() -> None:
    global OURS
    parser = argparse.ArgumentParser()
    parser.add_argument("--ours", default=OURS, help="Which server row is embellama's default.")
    parser.add_argument(
        "--rename",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="Show a server under another name (the run's labels are kept in JSON).",
    )
    args = parser.parse_args()
    OURS = args.ours
    results = json.loads((HERE / "results.json").read_text())
    for old, new in (item.split("=", 1) for item in args.rename):
        for table in (
            *results["scenarios"].values(),
            results["startup_seconds"],
            results["rss_mb"],
            results["rss_mb_after"],
            results["sustained"],
        ):
            if old in table:
                table[new] = table.pop(old)
    limit = results["engine_limit"]
    lines = [
        "# embellama vs llama-server vs llama-cpp-python's server",
        "",
        f"Machine: {results['machine']}. Every server: the same all-MiniLM-L6-v2 F16 GGUF, "
        f"{results['threads']} threads, loopback, the same fixed-seed texts (bench/corpus.py). "
        f"{results['rounds']} rounds, servers alternated within each round (order reversed every "
        "other round); medians. Reproduce: `make bench`.",
        "",
        f"Targets are checked for **{OURS}**.",
        "",
        "## Targets",
        "",
        *_targets(results),
        "",
        "## Engine limit (no HTTP, same texts, texts/s)",
        "",
        "| in-process | texts/s |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in limit.items()],
        "",
        "## All scenarios",
        "",
        *_table(results),
        "",
        "Start-up (process start to first good response, s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in results["startup_seconds"].items()),
        "",
        "RSS after the run (MB, server plus workers): "
        + ", ".join(f"{k} {v:.0f}" for k, v in results["rss_mb_after"].items()),
        "",
        *_plots(results),
        "",
        *(HERE / "notes.md").read_text().splitlines(),
        "",
    ]
    (HERE / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
