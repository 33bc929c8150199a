"""Start-up time, memory per worker and the logged estimate, per model and context (issue 25).

Starts `embellama serve` with each configuration (2 workers, the defaults otherwise),
times it to `/ready`, embeds two texts, then reads RSS and PSS of the server and its
workers from /proc and the estimate the server logged. Results: context_memory.md.

    python bench/context_memory.py
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.batch_budget import machine  # noqa: E402
from bench.context_sizing import _gemma  # noqa: E402
from embellama import prepare_default_model  # noqa: E402
from tests.e2e.server import start_server  # noqa: E402

OUT = Path(__file__).resolve().parent / "context_memory.md"


def _kib(pid: int, name: str, field: str) -> int:
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(label: str, args: list[str], logs: Path) -> str:
    started = time.monotonic()
    server = start_server([*args, "--cache-size", "0"], logs)
    try:
        server.wait_ready(timeout=120)
        ready = time.monotonic() - started
        response = httpx.post(
            server.url + "/v1/embeddings", json={"input": ["hello world", "a second text"]}
        )
        response.raise_for_status()
        workers = server.worker_pids()
        rss = [_kib(p, "status", "VmRSS") >> 10 for p in workers]
        pss = [_kib(p, "smaps_rollup", "Pss") >> 10 for p in workers]
        main_rss = _kib(server.process.pid, "status", "VmRSS") >> 10
        match = re.search(r"(\d+)-token context; .*? x (.*?per worker)", server.log())
        context, estimate = (match.group(1), match.group(2)) if match else ("?", "?")
    finally:
        server.stop()
    return (
        f"| {label} | {context} | {ready:.1f} | {', '.join(map(str, rss))} | "
        f"{', '.join(map(str, pss))} | {main_rss} | {estimate} |"
    )


def main() -> None:
    gemma = _gemma()
    minilm = str(prepare_default_model().path)
    runs = [
        ("all-MiniLM-L6-v2 F16, defaults", ["--model-path", minilm]),
        ("Gemma 3 270M Q4_K_M, defaults", ["--model-path", gemma]),
        ("Gemma 3 270M Q4_K_M, --n-ctx 8192", ["--model-path", gemma, "--n-ctx", "8192"]),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for label, args in runs:
            extra = ["--allow-unverified-architecture"] if "Gemma" in label else []
            rows.append(measure(label, [*args, *extra], Path(tmp)))
            print(rows[-1], flush=True)
    OUT.write_text(
        "# Start-up and memory per worker, by model and context\n\n"
        f"Machine: {machine()}. `embellama serve` with 2 workers (the default), cache off; "
        "ready = process start to `/ready` 200; memory after embedding two texts, MiB. "
        "The largest context that fits here is the trained one (32,768 for Gemma 3), "
        "so the defaults row is also that row. Reproduce: `python bench/context_memory.py`.\n\n"
        "| model | context | ready (s) | worker RSS | worker PSS | server RSS | "
        "estimate logged |\n|---|---:|---:|---:|---:|---:|---|\n" + "\n".join(rows) + "\n"
    )
    print(OUT.read_text())


if __name__ == "__main__":
    main()
