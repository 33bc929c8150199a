"""The newcomer test: every shell command, `python` and `toml` block, `curl` line and
inline `embellama ...` command of README.md and docs/*.md, run in order as a new user
would, against real `embellama serve` processes, so the docs cannot drift from the tool.

Substitutions, and nothing else: `127.0.0.1:8080` / `localhost:8080` become the port of the
server the snippet talks to (a free loopback port, given to `embellama serve` as
EMBELLAMA_PORT); the rewrites in SUBSTITUTIONS (each with its reason); `$KEY` is a
generated 32-character key and `$SECRET` another (a signing secret); the files the snippets name live in the working directory:
`model.gguf`, `MODEL.gguf`, `all-MiniLM-L6-v2.f16.gguf` and `models/bge-small-en-v1.5.f16.gguf`
are the default MiniLM (`embellama models path`), `bge-reranker-v2-m3.gguf` a tiny
XLM-RoBERTa cross-encoder, `in.jsonl`, `docs.jsonl` and `docs.parquet` small generated
inputs; a `toml` block is served as `embellama serve --config`.

An `embellama serve` line starts a server that must become ready and stop with exit 0 on
SIGTERM; the first one of a block stays up, and the client snippets after it (curl,
python) talk to it. Skipped snippets (Docker, a cluster, installs, CI's own entry points)
are named in SKIPPED with their reason; EXPECTED_FAILURES names snippets that fail for a
reason another branch fixes: one that passes fails this test until its entry is removed.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.readme_snippets import Snippet, snippets
from tests.e2e.server import ServerProcess, free_port
from tests.fixtures.tiny_xlmr import build_tiny_xlmr

ROOT = Path(__file__).parents[2]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
COMMAND_TIMEOUT_S = 120

# The start of exactly one snippet's text -> why it is not run.
SKIPPED = {
    "make serve": "CI's own entry point (`make test`, .ci/run); it serves until stopped",
    "make test": "CI's own entry point (.ci/run), which runs this test",
    "pip install 'embellama[corpus]'": "installs from PyPI; the test stack has the extra",
    "pip install 'embellama[ray]'": "installs from PyPI; the test stack has the extra",
    "import ray": "needs S3 and a cluster: 16 actors x 8 threads reserve 128 CPUs",
    "serve run embellama.ray.serve": "needs a Ray cluster (tests/e2e/test_ray_replica.py)",
    "curl localhost:8000/v1/embeddings": "talks to the Ray Serve deployment above",
    "make image": "needs Docker (tests/e2e/test_container_image.py builds it with buildah)",
    "docker run -p 8080:8080 embellama ": "needs Docker",
    "docker run -p 8080:8080 -v": "needs Docker",
    "pip install embellama ": "installs from PyPI; this is the installed package",
    "[[keys]]  # a key that must sign": "keys make the walk's unauthenticated /v1/models a "
    "401; tests/e2e/test_server_signing.py serves this shape",
}

# The start of exactly one snippet's text -> (what its failure prints, why, who fixes it).
# Failing otherwise, or passing, fails the test: the entry is then stale.
EXPECTED_FAILURES: dict[str, tuple[str, str]] = {}

# (pattern, replacement, why) applied to every command and python block.
SUBSTITUTIONS = (
    (r"^(\s*)curl ", r"\1curl --fail-with-body ", "an error status fails the command"),
    (r"--host 0\.0\.0\.0", "--host 127.0.0.1", "tests bind loopback addresses only"),
    (r"(?<=[\s=\"'])/models/", "{cwd}/models/", "the model files live in the working dir"),
    (r"\bembed \.\.\.", 'embed "some text"', "the prose elides the arguments"),
)

T = TypeVar("T")
PORT_IN_TEXT = re.compile(r"\b(?:127\.0\.0\.1|localhost):8080\b")


@dataclass
class Outcome:
    where: str  # the document's name
    snippet: Snippet
    status: str  # "ran", "skipped", "expected failure", "FAILED"
    detail: str = ""

    def label(self) -> str:
        return f"{self.where} {self.snippet.label()}"


@dataclass
class Walk:
    """Runs a document's snippets in order in `cwd`, keeping a block's first server up."""

    cwd: Path
    env: dict[str, str]
    current: ServerProcess | None = None
    current_block: int = -1
    document: str = ""
    outcomes: list[Outcome] = field(default_factory=list)

    def run(self, snippet: Snippet) -> None:
        reason = _matching(SKIPPED, snippet)
        if reason is not None:
            self.outcomes.append(Outcome(self.document, snippet, "skipped", reason))
            return
        error = self._attempt(snippet)
        expected = _matching(EXPECTED_FAILURES, snippet)
        if expected is None:
            status, detail = ("FAILED", error) if error else ("ran", "")
        elif not error:
            status, detail = (
                "FAILED",
                f"passes now: remove its EXPECTED_FAILURES entry ({expected[1]})",
            )
        elif expected[0] not in error:
            status, detail = "FAILED", f"fails otherwise than expected ({expected[1]}):\n{error}"
        else:
            status, detail = "expected failure", expected[1]
        self.outcomes.append(Outcome(self.document, snippet, status, detail))

    def close(self) -> None:
        """Stops the server kept up; the next document starts from none."""
        if self.current is not None:
            error = self._stop(self.current)
            self.current, self.current_block = None, -1
            assert not error, error

    def _attempt(self, snippet: Snippet) -> str:
        if snippet.kind == "toml":
            return self._serve_config(snippet)
        if snippet.kind == "python":
            return self._python(snippet)
        words = snippet.words()
        if words[:2] == ["embellama", "serve"] and "--help" not in words:
            return self._serve(snippet)
        return self._shell(snippet)

    def _serve(self, snippet: Snippet) -> str:
        """The block's first server stays up for the client snippets after it."""
        keep = snippet.block != self.current_block
        if keep:
            self.close()
            self.current_block = snippet.block
        server = self._start(self._substituted(snippet.text))
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
        try:
            listed = httpx.get(server.url + "/v1/models").json()["data"]
        finally:
            error = self._stop(server)
        missing = names - {entry["id"] for entry in listed}
        return error or (f"not served: {sorted(missing)}" if missing else "")

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
        script = self.cwd / f"{Path(self.document).stem}_{snippet.line}.py"
        script.write_text(self._localized(snippet.text))
        return self._check([sys.executable, script.name], snippet.text)

    def _shell(self, snippet: Snippet) -> str:
        return self._check(["bash", "-c", self._localized(snippet.text)], snippet.text)

    def _substituted(self, text: str) -> str:
        for pattern, replacement, _why in SUBSTITUTIONS:
            text = re.sub(pattern, replacement.format(cwd=self.cwd), text, flags=re.MULTILINE)
        return text

    def _localized(self, text: str) -> str:
        if PORT_IN_TEXT.search(text) and self.current is None:
            raise AssertionError(f"a client snippet before any server:\n{text}")
        port = self.current.port if self.current else 0
        return PORT_IN_TEXT.sub(f"127.0.0.1:{port}", self._substituted(text))

    def _check(self, argv: list[str], text: str) -> str:
        try:
            done = subprocess.run(
                argv,
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"still running after {COMMAND_TIMEOUT_S} s"
        if done.returncode == 0:
            return ""
        return f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def _is_knob(name: str) -> bool:
    return name.startswith("EMBELLAMA_") and name != "EMBELLAMA_HOME"


def _matching(table: Mapping[str, T], snippet: Snippet) -> T | None:
    return next((why for key, why in table.items() if _starts(snippet, key)), None)


def _starts(snippet: Snippet, key: str) -> bool:
    return snippet.text.lstrip().startswith(key)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, minilm_gguf: Path) -> Path:
    """The files the README's snippets name, as a newcomer would have them at hand."""
    reranker = build_tiny_xlmr(tmp_path_factory.mktemp("readme-reranker"), classifier=True)
    cwd = tmp_path_factory.mktemp("readme")
    (cwd / "model.gguf").symlink_to(minilm_gguf)
    (cwd / "all-MiniLM-L6-v2.f16.gguf").symlink_to(minilm_gguf)
    (cwd / "MODEL.gguf").symlink_to(minilm_gguf)
    (cwd / "models").mkdir()
    (cwd / "models" / "bge-small-en-v1.5.f16.gguf").symlink_to(minilm_gguf)
    (cwd / "bge-reranker-v2-m3.gguf").symlink_to(reranker.gguf)
    texts = [f"document number {i} about vectors" for i in range(5)]
    columns = {"id": list(range(5)), "doc_id": [f"d{i}" for i in range(5)], "text": texts}
    pq.write_table(pa.table(columns), cwd / "docs.parquet")
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
    assert shutil.which("curl"), "the README's curl lines need curl (apt-get install curl)"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # A newcomer's shell sets no EMBELLAMA_* knob; only where the default model lives.
    clean = {k: v for k, v in os.environ.items() if not _is_knob(k)}
    env = {**clean, "PATH": path, "KEY": secrets.token_hex(16), "SECRET": secrets.token_hex(16)}
    runner = Walk(workdir, env)
    try:
        yield runner
    finally:
        runner.close()


def test_tables_name_real_snippets() -> None:
    """A stale SKIPPED or EXPECTED_FAILURES entry would silently stop meaning anything."""
    found = [snippet for document in DOCUMENTS for snippet in snippets(document)]
    for key in (*SKIPPED, *EXPECTED_FAILURES):
        assert sum(_starts(snippet, key) for snippet in found) == 1, key


def test_snippets_are_commands_as_the_shell_reads_them(tmp_path: Path) -> None:
    """Continuations and quoted newlines join; comments and indented fences are handled;
    an inline command already fenced is not run twice."""
    page = tmp_path / "page.md"
    page.write_text(
        "Run `embellama serve` or `embellama inspect x.gguf`.\n"
        "```sh\n"
        "embellama serve   # a comment\n"
        'curl -s localhost:8080/v1/x -d \'{"a": 1,\n'
        '  "b": 2}\'\n'
        "embellama embed --input a.jsonl \\\n"
        "    --output b.jsonl\n"
        "# only a comment\n"
        "```\n"
        "- item\n"
        "  ```python\n"
        "  print('indented')\n"
        "  ```\n"
        "```text\n"
        "curl -s localhost:8080/health\n"
        "not a command\n"
        "```\n"
    )
    found = [(s.kind, s.line, s.words() if s.kind != "python" else s.text) for s in snippets(page)]
    assert found == [
        ("sh", 3, ["embellama", "serve"]),
        ("sh", 4, ["curl", "-s", "localhost:8080/v1/x", "-d", '{"a": 1,\n  "b": 2}']),
        ("sh", 6, ["embellama", "embed", "--input", "a.jsonl", "--output", "b.jsonl"]),
        ("python", 12, "print('indented')\n"),
        ("sh", 15, ["curl", "-s", "localhost:8080/health"]),
        ("inline", 1, ["embellama", "inspect", "x.gguf"]),
    ]


@pytest.mark.slow
def test_every_documented_snippet_runs(
    walk: Walk, workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for document in DOCUMENTS:
        # Each document is read on its own: its outputs never meet another's.
        walk.document, walk.cwd = document.name, tmp_path / document.stem
        shutil.copytree(workdir, walk.cwd, symlinks=True)
        for snippet in snippets(document):
            walk.run(snippet)
        walk.close()
    with capsys.disabled():
        print(_summary(walk.outcomes))
    failed = [o for o in walk.outcomes if o.status == "FAILED"]
    assert not failed, "\n\n".join(f"{o.label()}\n{o.detail}" for o in failed)


def _summary(outcomes: list[Outcome]) -> str:
    statuses = dict.fromkeys(o.status for o in outcomes)
    counts = ", ".join(f"{sum(o.status == s for o in outcomes)} {s}" for s in statuses)
    blocks = len({(o.where, o.snippet.block) for o in outcomes if o.snippet.kind != "inline"})
    inline = sum(o.snippet.kind == "inline" for o in outcomes)
    lines = [
        f"\nDocumented snippets: {len(outcomes)} ({counts}), from {blocks} fenced blocks"
        f" and {inline} inline commands"
    ]
    lines += [
        f"  {o.status}: {o.label()} -- {o.detail.splitlines()[0] if o.detail else ''}"
        for o in outcomes
        if o.status != "ran"
    ]
    return "\n".join(lines)
