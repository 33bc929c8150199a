"""Start and stop a real `embellama serve` process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """The server's live worker processes (spawned from any of its threads)."""
        tasks = Path(f"/proc/{self.process.pid}/task").glob("*/children")
        pids = []
        for child in (int(pid) for task in tasks for pid in task.read_text().split()):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
                pids.append(child)
        return pids

    def wait_ready(self, timeout: float = 60.0) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/ready", timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def start_server(
    args: Sequence[str],
    log_dir: Path,
    env: dict[str, str] | None = None,
    *,
    port_in_env: bool = False,
    new_session: bool = False,
) -> ServerProcess:
    """`port_in_env` passes the port as EMBELLAMA_PORT, so `args` can be truly empty;
    `new_session` makes the server lead its own process group (signal it with killpg)."""
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    handle = log_path.open("wb")
    port_args = [] if port_in_env else ["--port", str(port)]
    port_env = {"EMBELLAMA_PORT": str(port)} if port_in_env else {}
    process = subprocess.Popen(
        [sys.executable, "-m", "embellama", "serve", *port_args, *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, **port_env, **(env or {})},
        start_new_session=new_session,
    )
    handle.close()
    return ServerProcess(process, port, log_path)


@contextmanager
def serving(
    args: Sequence[str],
    log_dir: Path,
    env: dict[str, str] | None = None,
    *,
    port_in_env: bool = False,
) -> Iterator[ServerProcess]:
    """A ready server for the block; afterwards it must stop cleanly (SIGTERM, exit 0)."""
    process = start_server(args, log_dir, env, port_in_env=port_in_env)
    try:
        process.wait_ready()
        yield process
    finally:
        assert process.stop() == 0, process.log()
