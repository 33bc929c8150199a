"""Weights changed under load: a real server with two versions of one model, N clients
(default 16) for S seconds (default 60), the weights changed three times (50/50, then
v2 = 100, then v1 = 100) at even intervals; reports requests, failures (must be 0), and
per-version counts, and writes bench/ab_weights.md. Also prints the A/B distribution of
10,000 assignment keys at 90/10 and how many keys 10 -> 20 moves.

    python bench/ab_weights.py                       # the issue's run: c16, 60 s
    python bench/ab_weights.py --clients 2 --seconds 2 --no-write   # a quick check

Needs the default model (`embellama models prepare`) or `--model PATH`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from embellama.default_model import require_default_model
from embellama.routing import choose
from tests.e2e.server import free_port

ADMIN_KEY = "sk-admin-bench-ab-4e1f70"
CONFIG = """
[server]
admin_key = ["{key}"]
request_timeout = 60

[[models]]
name = "m"
version = "v1"
weight = 90
path = "{path}"
workers = 1

[[models]]
name = "m"
version = "v2"
weight = 10
path = "{path}"
normalization = "none"
workers = 1
"""
CHANGES = ({"v1": 50, "v2": 50}, {"v2": 100}, {"v1": 100})


def distribution() -> tuple[float, float]:
    """Share of 10,000 keys on v2 at 90/10, and share moved by 90/10 -> 80/20."""
    keys = [f"user-{n}" for n in range(10_000)]
    before = [choose([("v1", 90.0), ("v2", 10.0)], key) for key in keys]
    after = [choose([("v1", 80.0), ("v2", 20.0)], key) for key in keys]
    moved = [b != a for b, a in zip(before, after, strict=True)]
    assert all(a == "v2" for a, m in zip(after, moved, strict=True) if m)
    return before.count("v2") / len(keys), sum(moved) / len(keys)


def run(model: Path, clients: int, seconds: float) -> dict[str, object]:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "ab.toml"
        config.write_text(CONFIG.format(key=ADMIN_KEY, path=model))
        log = (Path(folder) / "server.log").open("wb")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "embellama",
                "serve",
                "--port",
                str(port),
                "--config",
                str(config),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url)
            return _load(url, clients, seconds)
        finally:
            server.terminate()
            server.wait(30)
            log.close()


def _wait_ready(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the server did not become ready")


def _load(url: str, clients: int, seconds: float) -> dict[str, object]:
    stop = threading.Event()
    failures: list[str] = []
    served: Counter[str] = Counter()

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            n = 0
            while not stop.is_set():
                n += 1
                body = {"input": f"ab {index} {n}", "model": "m", "user": f"u{index}-{n % 100}"}
                answer = http.post("/v1/embeddings", json=body)
                if answer.status_code == 200:
                    served[answer.headers["x-model-version"]] += 1
                else:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    step = seconds / (len(CHANGES) + 1)
    changed = []
    try:
        for weights in CHANGES:
            time.sleep(step)
            answer = httpx.post(
                f"{url}/admin/models/m/weights",
                json=weights,
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                timeout=30,
            )
            changed.append(answer.status_code)
        time.sleep(step)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    return {
        "requests": sum(served.values()) + len(failures),
        "failed": len(failures),
        "first_failures": failures[:3],
        "by_version": dict(served),
        "weight_changes": changed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    share, moved = distribution()
    outcome = run(args.model or require_default_model(), args.clients, args.seconds)
    lines = [
        "# Weights changed under load (bench/ab_weights.py)",
        "",
        f"- 10,000 keys at 90/10: {share:.2%} on v2; 90/10 -> 80/20 moved {moved:.2%}, all to v2",
        f"- c{args.clients}, {args.seconds:g} s, weights changed {len(CHANGES)} times "
        f"(statuses {outcome['weight_changes']}): {outcome['requests']} requests, "
        f"{outcome['failed']} failed; by version {outcome['by_version']}",
    ]
    print("\n".join(lines))
    if outcome["failed"]:
        print("failures:", outcome["first_failures"])
    if not args.no_write:
        (Path(__file__).parent / "ab_weights.md").write_text("\n".join(lines) + "\n")
    sys.exit(1 if outcome["failed"] else 0)


if __name__ == "__main__":
    main()
