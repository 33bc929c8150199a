"""What signing costs a request: p50 latency of signed against unsigned requests.

Two servers on the same model and settings, one with `--require-signed-requests`; one
client sends one request at a time to each, in ABBA order (unsigned, signed, signed,
unsigned per round) so drift in the machine falls on both alike. The signed client signs
every request itself (`embellama.signing.sign`), as a real one would, so the figure is
the whole cost: client HMAC, the header, the server's body read, hash, HMAC and replay
memory. The same short text each time (cache hits) keeps the request itself as cheap as
it gets, so the overhead is seen at its largest.

    python bench/signing.py [--rounds 6] [--seconds 10] [--out bench/signing.md]
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from embellama.signing import SIGNATURE_HEADER, sign
from tests.e2e.server import ServerProcess, start_server

KEY = "sk-bench-signing-" + secrets.token_hex(8)
SECRET = "bench-secret-" + secrets.token_hex(16)
PATH = "/v1/embeddings"
TEXT = "how much does a signature cost?"
_COUNTER = itertools.count()


@contextmanager
def _server(extra: list[str], logs: Path) -> Iterator[ServerProcess]:
    args = ["--api-key", KEY, "--workers", "1", "--log-level", "warning", *extra]
    process = start_server(args, logs, {"EMBELLAMA_SIGNING_SECRET": SECRET})
    try:
        process.wait_ready(120)
        yield process
    finally:
        process.stop()


def _latencies(server: ServerProcess, signed: bool, seconds: float) -> list[float]:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    times: list[float] = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            # A distinct `user` per request (both servers alike): each signature is new,
            # and the text, hence the cache hit, stays the same.
            body = orjson.dumps({"input": TEXT, "user": f"u{next(_COUNTER)}"})
            started = time.perf_counter()
            extra = {}
            if signed:
                extra[SIGNATURE_HEADER] = sign(SECRET, "POST", PATH, body)
            response = client.post(PATH, content=body, headers=extra)
            times.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0, help="per server per turn")
    parser.add_argument("--out", type=Path, help="write the table here too (markdown)")
    args = parser.parse_args()
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / "embellama-bench-signing"
    logs.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[int, float, float]] = []
    with (
        _server([], logs) as plain,
        _server(
            ["--require-signed-requests", "--signature-replay-capacity", "1000000"], logs
        ) as signing,
    ):
        _latencies(plain, False, 1.0)  # warm both: first requests load caches
        _latencies(signing, True, 1.0)
        for number in range(1, args.rounds + 1):
            samples: dict[bool, list[float]] = {False: [], True: []}
            for signed in (False, True, True, False):  # ABBA
                server = signing if signed else plain
                samples[signed] += _latencies(server, signed, args.seconds / 2)
            rows.append(
                (number, statistics.median(samples[False]), statistics.median(samples[True]))
            )
    table = _table(rows, args)
    print(table)
    if args.out:
        args.out.write_text(table)
    return 0


def _table(rows: list[tuple[int, float, float]], args: argparse.Namespace) -> str:
    lines = [
        f"Signed vs unsigned, one client, {args.rounds} ABBA rounds of {args.seconds:g} s "
        "per server (`python bench/signing.py`)",
        "",
        "| round | unsigned p50 (us) | signed p50 (us) | overhead (us) |",
        "|---|---|---|---|",
    ]
    for number, plain, signed in rows:
        lines.append(
            f"| {number} | {plain * 1e6:.0f} | {signed * 1e6:.0f} | {(signed - plain) * 1e6:+.0f} |"
        )
    overhead = statistics.median(signed - plain for _, plain, signed in rows)
    lines += ["", f"Median overhead per request: {overhead * 1e6:+.0f} us", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
