"""The newcomer test: every shell command, `python` and `toml` block and `curl` line of
README.md, run in order as a new user would, against real `embellama serve` processes,
so the README cannot drift from the tool.

Substitutions, and nothing else: `127.0.0.1:8080` / `localhost:8080` become the port of the
server the snippet talks to (a free loopback port, given to `embellama serve` as
EMBELLAMA_PORT); `curl` gets `--fail-with-body`, so an error status fails it; the files
the README names live in the working directory: `model.gguf` and
`all-MiniLM-L6-v2.f16.gguf` are the default MiniLM (`embellama models path`),
`bge-reranker-v2-m3.gguf` a tiny XLM-RoBERTa cross-encoder, `in.jsonl` and `docs.jsonl`
small generated inputs; a `toml` block is served as `embellama serve --config`.

An `embellama serve` line starts a server that must become ready and stop with exit 0 on
SIGTERM; the first one of a block stays up, and the client snippets after it (curl,
python) talk to it. Skipped snippets (Docker, a cluster, installs, CI's own entry points)
are named in SKIPPED with their reason; EXPECTED_FAILURES names snippets that fail for a
reason another branch fixes: one that passes fails this test until its entry is removed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e.readme_snippets import Snippet, snippets
from tests.e2e.server import ServerProcess, free_port
from tests.fixtures.tiny_xlmr import build_tiny_xlmr

README = Path(__file__).parents[2] / "README.md"
COMMAND_TIMEOUT_S = 120

# A unique piece of the snippet's text -> why it is not run.
SKIPPED = {
    "make serve": "CI's own entry point (`make test`, .ci/run); it serves until stopped",
    "make test": "CI's own entry point (.ci/run), which runs this test",
    "pip install 'embellama[corpus]'": "installs from PyPI; the test stack has the extra",
    "pip install 'embellama[ray]'": "installs from PyPI; the test stack has the extra",
    "embellama embed --ray": "needs a Ray cluster (tests/e2e/test_ray.py runs a local one)",
    "import ray": "needs a Ray cluster and S3 (tests/e2e/test_ray.py)",
    "serve run embellama.ray.serve": "needs a Ray cluster (tests/e2e/test_ray_replica.py)",
    "make image": "needs Docker (tests/e2e/test_container_image.py builds it with buildah)",
    "docker run -p 8080:8080 embellama ": "needs Docker",
    "docker run -p 8080:8080 -v": "needs Docker",
}

# A unique piece of the snippet's text -> the reason it fails today, fixed on another branch.
EXPECTED_FAILURES: dict[str, str] = {}

PORT_IN_TEXT = re.compile(r"\b(?:127\.0\.0\.1|localhost):8080\b")


@dataclass
class Outcome:
    snippet: Snippet
    status: str  # "ran", "skipped", "expected failure", "FAILED"
    detail: str = ""


@dataclass
class Walk:
    """Runs the README's snippets in order in `cwd`, keeping the block's first server up."""

    cwd: Path
    env: dict[str, str]
    current: ServerProcess | None = None
    current_block: int = -1
    outcomes: list[Outcome] = field(default_factory=list)

    def run(self, snippet: Snippet) -> None:
        reason = _matching(SKIPPED, snippet)
        if reason is not None:
            self.outcomes.append(Outcome(snippet, "skipped", reason))
            return
        error = self._attempt(snippet)
        expected = _matching(EXPECTED_FAILURES, snippet)
        if expected is not None:
            status, detail = (
                ("expected failure", expected)
                if error
                else ("FAILED", f"passes now: remove its EXPECTED_FAILURES entry ({expected})")
            )
        else:
            status, detail = ("FAILED", error) if error else ("ran", "")
        self.outcomes.append(Outcome(snippet, status, detail))

    def close(self) -> None:
        if self.current is not None:
            self._stop(self.current)
            self.current = None

    def _attempt(self, snippet: Snippet) -> str:
        if snippet.kind == "toml":
            return self._serve_config(snippet)
        if snippet.kind == "python":
            return self._python(snippet)
        if snippet.words()[:2] == ["embellama", "serve"]:
            return self._serve(snippet)
        return self._shell(snippet)

    def _serve(self, snippet: Snippet) -> str:
        """The block's first server stays up for the client snippets after it."""
        keep = snippet.block != self.current_block
        if keep:
            self.close()
            self.current_block = snippet.block
        server = self._start(snippet.text)
        error = self._ready(server)
        if keep and not error:
            self.current = server
            return ""
        return error or self._stop(server)

    def _serve_config(self, snippet: Snippet) -> str:
        config = self.cwd / "embellama.toml"
        config.write_text(snippet.text)
        server = self._start("embellama serve --config embellama.toml")
        error = self._ready(server)
        if error:
            return error
        names = {model["name"] for model in tomllib.loads(snippet.text).get("models", [])}
        served = {entry["id"] for entry in httpx.get(server.url + "/v1/models").json()["data"]}
        missing = names - served
        return self._stop(server) or (f"not served: {sorted(missing)}" if missing else "")

    def _start(self, command: str) -> ServerProcess:
        port = free_port()
        log_path = self.cwd / f"server-{port}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, "EMBELLAMA_PORT": str(port)},
            )
        return ServerProcess(process, port, log_path)

    def _ready(self, server: ServerProcess) -> str:
        try:
            server.wait_ready(timeout=COMMAND_TIMEOUT_S)
        except (RuntimeError, TimeoutError) as failure:
            server.stop(signal.SIGKILL)
            return str(failure)
        return ""

    def _stop(self, server: ServerProcess) -> str:
        code = server.stop()
        return "" if code == 0 else f"exit {code} on SIGTERM:\n{server.log()[-3000:]}"

    def _python(self, snippet: Snippet) -> str:
        script = self.cwd / f"snippet_{snippet.line}.py"
        script.write_text(self._localized(snippet.text))
        return self._check([sys.executable, script.name], snippet.text)

    def _shell(self, snippet: Snippet) -> str:
        command = re.sub(r"^(\s*)curl ", r"\1curl --fail-with-body ", snippet.text)
        return self._check(["bash", "-c", self._localized(command)], snippet.text)

    def _localized(self, text: str) -> str:
        if PORT_IN_TEXT.search(text) and self.current is None:
            raise AssertionError(f"a client snippet before any server:\n{text}")
        port = self.current.port if self.current else 0
        return PORT_IN_TEXT.sub(f"127.0.0.1:{port}", text)

    def _check(self, argv: list[str], text: str) -> str:
        done = subprocess.run(
            argv,
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if done.returncode == 0:
            return ""
        return f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def _matching(table: dict[str, str], snippet: Snippet) -> str | None:
    return next((why for key, why in table.items() if key in snippet.text), None)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, minilm_gguf: Path) -> Path:
    """The files the README's snippets name, as a newcomer would have them at hand."""
    reranker = build_tiny_xlmr(tmp_path_factory.mktemp("readme-reranker"), classifier=True)
    cwd = tmp_path_factory.mktemp("readme")
    (cwd / "model.gguf").symlink_to(minilm_gguf)
    (cwd / "all-MiniLM-L6-v2.f16.gguf").symlink_to(minilm_gguf)
    (cwd / "bge-reranker-v2-m3.gguf").symlink_to(reranker.gguf)
    (cwd / "in.jsonl").write_text('"a bare string"\n{"id": "b", "text": "an object"}\n')
    (cwd / "docs.jsonl").write_text(
        "".join(
            f'{{"doc_id": "d{i}", "url": "https://example.org/{i}", "title": "t{i}",'
            f' "text": "document number {i} about vectors"}}\n'
            for i in range(5)
        )
    )
    return cwd


@pytest.fixture
def walk(workdir: Path) -> Iterator[Walk]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    runner = Walk(workdir, {**os.environ, "PATH": path})
    try:
        yield runner
    finally:
        runner.close()


def test_tables_name_real_snippets() -> None:
    """A stale SKIPPED or EXPECTED_FAILURES entry would silently stop meaning anything."""
    found = snippets(README)
    for key in (*SKIPPED, *EXPECTED_FAILURES):
        assert sum(key in snippet.text for snippet in found) == 1, key


@pytest.mark.slow
def test_every_readme_snippet_runs(walk: Walk, capsys: pytest.CaptureFixture[str]) -> None:
    for snippet in snippets(README):
        walk.run(snippet)
    walk.close()
    with capsys.disabled():
        print(_summary(walk.outcomes))
    failed = [o for o in walk.outcomes if o.status == "FAILED"]
    assert not failed, "\n\n".join(f"{o.snippet.label()}\n{o.detail}" for o in failed)


def _summary(outcomes: list[Outcome]) -> str:
    counts = {s: sum(o.status == s for o in outcomes) for s in dict.fromkeys(o.status for o in outcomes)}
    lines = [f"\nREADME snippets: {len(outcomes)} ({', '.join(f'{n} {s}' for s, n in counts.items())})"]
    lines += [
        f"  {o.status}: {o.snippet.label()} -- {o.detail.splitlines()[0] if o.detail else ''}"
        for o in outcomes
        if o.status != "ran"
    ]
    return "\n".join(lines)
