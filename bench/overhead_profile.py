"""Where the milliseconds of a 16-client request go, measured, for one or more servers.

For each configuration, with 16 keep-alive clients sending one short text per request
(bench/fast_client.py, fresh texts every run):

1. **CPU per request, by component.** /proc gives each process's (and the server's each
   thread's) CPU over a run; the client's comes from getrusage. A second run is profiled:
   py-spy (`--gil`, the server's Python, split into stages by the innermost known frame)
   and `perf record` on one worker (split by shared object: ggml's kernels, libgomp's
   barrier wait, llama.cpp, Python, kernel). Profile shares are scaled to the measured
   CPU, so the table adds up to what the processes used.
2. **Wall time of a request.** Latency from the client; tokenize and queue wait from the
   server's x-tokenize-time / x-queue-time headers; decode time per batch from the
   worker-reported inference time (the per-request shares summed over a run, divided by
   the decodes counted in /metrics). The rest is HTTP, parsing, the pipe both ways and
   the response.

    python bench/overhead_profile.py --config "before=--workers 1" --config "after="

Needs py-spy and perf. Writes bench/overhead_profile.md and raw profiles to
bench/profiles/overhead_<label>_{server_pyspy.txt,worker_perf.txt}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.corpus import short_texts
from bench.fast_client import Run, post_all
from bench.load import HERE, Server, _tree
from embellama import prepare_default_model

CLIENTS = 16
REQUESTS = 1200
PORT = 18561
# Innermost frame wins: the first rule (leaf to root) whose path fragment matches.
STAGES = (
    ("tokenization", ("model/tokenizer.py", "model/native.py")),
    (
        "request parsing and validation",
        ("server/wire/", "pydantic", "embellama/inputs.py", "body.py"),
    ),
    ("response encoding", ("server/encoding.py",)),
    ("normalization", ("embellama/vectors.py",)),
    ("metrics and access log", ("server/metrics.py", "prometheus_client", "logging/")),
    (
        "scheduler, worker pipe and pickling",
        ("batching/", "backends/pool.py", "multiprocessing/", "pickle", "queue.py"),
    ),
    ("pipeline glue", ("embellama/pipeline.py", "embellama/engine.py", "embellama/results.py")),
    (
        "HTTP: uvicorn, Starlette, middleware, routes",
        # Not uvicorn/server.py: it is the root of every event-loop stack.
        ("uvicorn/protocols", "uvicorn/middleware", "starlette/", "embellama/server/"),
    ),
)
EVENT_LOOP = "event loop (asyncio, uvloop) and other"
WORKER_PARTS = (
    (
        "decode: ggml kernels (libm: GELU's erf/tanh)",
        ("libggml-cpu", "libggml-base", "libggml.so", "libm.so"),
    ),
    ("decode: OpenMP barrier wait and spin", ("libgomp",)),
    ("decode: llama.cpp graph and scheduling", ("libllama",)),
    ("worker Python: job, pooling, pickling", ("libpython", "_pickle", "_multiarray", ".cpython")),
    ("worker kernel (pipe, scheduler, page faults)", ("[kernel",)),
    ("worker libc (memcpy, memset, malloc)", ("libc.so",)),
)


@dataclass
class Measured:
    run: Run
    cpu_ms: dict[str, float]  # per request
    batches: float = 0.0
    inference_sum_s: float = 0.0
    stage_shares: dict[str, float] = field(default_factory=dict)
    worker_shares: dict[str, float] = field(default_factory=dict)


def _stat_cpu(path: Path) -> float:
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_snapshot(server_pid: int) -> dict[str, float]:
    """CPU seconds of the server's event-loop thread, its other threads, each worker."""
    snapshot = {"server event loop": 0.0, "server pipe threads": 0.0}
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        key = "server event loop" if task.name == str(server_pid) else "server pipe threads"
        snapshot[key] += _stat_cpu(task / "stat")
    for pid in _tree(server_pid)[1:]:
        try:
            snapshot["workers"] = snapshot.get("workers", 0.0) + _stat_cpu(
                Path(f"/proc/{pid}/stat")
            )
        except FileNotFoundError:
            continue
    return snapshot


def _metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(
        float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    )


def _bodies(texts: list[str]) -> list[bytes]:
    return [json.dumps({"input": [t], "model": "m"}).encode() for t in texts]


def measure(server: Server, texts: list[str]) -> Measured:
    assert server.process is not None
    pid = server.process.pid
    before = _cpu_snapshot(pid)
    batches = _metric(server.url, "embellama_batch_size_count")
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    run = post_all(server.url, _bodies(texts), CLIENTS)
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    after = _cpu_snapshot(pid)
    assert set(run.statuses) == {200}, run.statuses
    n = run.requests
    cpu = {key: 1000 * (after[key] - before.get(key, 0.0)) / n for key in after}
    cpu["client"] = (
        1000
        * (
            client_after.ru_utime
            + client_after.ru_stime
            - client_before.ru_utime
            - client_before.ru_stime
        )
        / n
    )
    measured = Measured(run, cpu)
    measured.batches = _metric(server.url, "embellama_batch_size_count") - batches
    measured.inference_sum_s = sum(run.stage_ms.get("inference", [])) / 1000
    return measured


def _stage_of(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for stage, fragments in STAGES:
            if any(fragment in frame for fragment in fragments):
                return stage
    return EVENT_LOOP


def _pyspy_shares(path: Path) -> dict[str, float]:
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            counts[_stage_of(stack)] += int(count)
    total = sum(counts.values()) or 1
    return {stage: count / total for stage, count in counts.items()}


def _perf_shares(report: str) -> dict[str, float]:
    counts: Counter[str] = Counter()
    for line in report.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(\S+)", line)
        if not match:
            continue
        share, dso = float(match.group(1)), match.group(2)
        part = next(
            (name for name, keys in WORKER_PARTS if any(k in dso for k in keys)), "worker other"
        )
        counts[part] += share
    total = sum(counts.values()) or 1
    return {part: value / total for part, value in counts.items()}


def profile(server: Server, texts: list[str], label: str, measured: Measured) -> None:
    """A second run under py-spy (server) and perf (one worker): shares, not totals."""
    assert server.process is not None
    pids = _tree(server.process.pid)
    workers = [
        pid
        for pid in pids[1:]
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    spy_out = HERE / "profiles" / f"overhead_{label}_server_pyspy.txt"
    perf_data = Path(tempfile.mkdtemp()) / "worker.data"
    seconds = 6
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--gil",
            "-r",
            "250",
            "-d",
            str(seconds),
            "-f",
            "raw",
            "-o",
            str(spy_out),
            "-p",
            str(pids[0]),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    perf = subprocess.Popen(
        [
            *("perf", "record", "-F", "499", "-o", str(perf_data), "-p", str(workers[-1])),
            *("--", "sleep", str(seconds)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    deadline = time.monotonic() + seconds - 1
    offset = 0
    while time.monotonic() < deadline:  # keep the load on for the whole profile
        post_all(server.url, _bodies(texts[offset : offset + 200]), CLIENTS)
        offset = (offset + 200) % (len(texts) - 200)
    spy.wait()
    perf.wait()
    report = subprocess.run(
        ["perf", "report", "-i", str(perf_data), "--sort", "dso", "--stdio", "-g", "none"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (HERE / "profiles" / f"overhead_{label}_worker_perf.txt").write_text(report)
    measured.stage_shares = _pyspy_shares(spy_out)
    measured.worker_shares = _perf_shares(report)


def cpu_rows(m: Measured) -> list[tuple[str, float]]:
    loop = m.cpu_ms["server event loop"]
    rows = [(f"server: {stage}", loop * share) for stage, share in m.stage_shares.items()]
    rows.sort(key=lambda row: -row[1])
    rows.append(
        ("server: worker pipe threads (recv, send, unpickle)", m.cpu_ms["server pipe threads"])
    )
    worker = m.cpu_ms.get("workers", 0.0)
    parts = sorted(m.worker_shares.items(), key=lambda item: -item[1])
    rows += [(f"worker: {part}", worker * share) for part, share in parts]
    rows.append(("client (bench/fast_client.py)", m.cpu_ms["client"]))
    return rows


def write(results: dict[str, Measured], configs: dict[str, list[str]]) -> str:
    labels = list(results)
    lines = [
        "# Where a 16-client request's milliseconds go",
        "",
        f"Machine: {machine()}. all-MiniLM-L6-v2 F16, one short text (8-40 words) per",
        f"request, {CLIENTS} keep-alive clients (bench/fast_client.py), {REQUESTS} fresh",
        "texts per run. Configurations: "
        + "; ".join(f"**{k}** = `{' '.join(['embellama serve', *v])}`" for k, v in configs.items())
        + ".",
        "",
        "Reproduce: `python bench/overhead_profile.py "
        + " ".join(f'--config "{k}={" ".join(v)}"' for k, v in configs.items())
        + "`",
        "",
        "## CPU per request (ms of one core), by component",
        "",
        "Totals from /proc and getrusage over one run; the split inside the server's event",
        "loop thread from py-spy (`--gil`, innermost known frame), inside one worker from",
        "`perf record` by shared object, both from a second, profiled run.",
        "",
        "| component | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    tables = {label: dict(cpu_rows(m)) for label, m in results.items()}
    names: list[str] = []
    for table in tables.values():
        names += [name for name in table if name not in names]
    for name in names:
        cells = [f"{tables[label][name]:.3f}" if name in tables[label] else "-" for label in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = [sum(tables[label].values()) for label in labels]
    lines.append("| **total** | " + " | ".join(f"**{t:.2f}**" for t in totals) + " |")
    capacity = [2000 * results[label].run.seconds / results[label].run.requests for label in labels]
    lines.append(
        "| 2 cores × wall time per request | " + " | ".join(f"{c:.2f}" for c in capacity) + " |"
    )
    lines.append(
        "| requests/s | "
        + " | ".join(f"{results[label].run.throughput:.1f}" for label in labels)
        + " |"
    )
    lines += [
        "",
        "## Wall time of one request (ms, mean over the run)",
        "",
        "| stage | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    walls: dict[str, list[str]] = {}
    for label in labels:
        m = results[label]
        latency = 1000 * sum(m.run.latencies) / m.run.requests
        tokenize = _mean(m.run.stage_ms.get("tokenize", []))
        queue = _mean(m.run.stage_ms.get("queue", []))
        decode = 1000 * m.inference_sum_s / m.batches if m.batches else float("nan")
        per_decode = m.run.requests / m.batches if m.batches else float("nan")
        rest = latency - tokenize - queue - decode
        for name, value in (
            ("tokenization (server)", f"{tokenize:.2f}"),
            ("queue wait: admitted to its batch's start", f"{queue:.2f}"),
            ("decode of its batch (worker-measured)", f"{decode:.2f}"),
            ("HTTP, parsing, pipe both ways, response, client", f"{rest:.2f}"),
            ("**latency seen by the client**", f"**{latency:.2f}**"),
            ("inputs per decode", f"{per_decode:.2f}"),
        ):
            walls.setdefault(name, []).append(value)
    lines += [f"| {name} | " + " | ".join(values) + " |" for name, values in walls.items()]
    return "\n".join(lines) + "\n"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", action="append", default=[], help='"label=serve flags"')
    args = parser.parse_args()
    configs = {
        label: shlex.split(flags)
        for label, _, flags in (c.partition("=") for c in args.config or ["defaults="])
    }
    model = prepare_default_model().path
    texts = short_texts(REQUESTS * len(configs) + 2000, seed=2611)
    results: dict[str, Measured] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for index, (label, flags) in enumerate(configs.items()):
            command = [sys.executable, "-m", "embellama", "serve", "--model-path", str(model)]
            command += ["--model-name", "m", "--cache-size", "0", "--log-level", "warning"]
            command += [*flags, "--port", str(PORT)]
            server = Server(label, command, PORT)
            server.start(Path(scratch))
            try:
                post_all(server.url, _bodies(texts[-100:]), 4)  # warm-up
                mine = texts[index * REQUESTS : (index + 1) * REQUESTS]
                results[label] = measure(server, mine)
                profile(server, texts[-2000:-100], label, results[label])
            finally:
                server.stop()
            print(label, f"{results[label].run.throughput:.1f} req/s", flush=True)
    out = HERE / "overhead_profile.md"
    out.write_text(write(results, configs))
    print(out.read_text())


if __name__ == "__main__":
    main()
