"""The `embellama` command as a user runs it: a real process on the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embellama import EmbeddingEngine
from tests.e2e.redis_server import start_redis
from tests.tolerances import assert_batch_invariant


def _cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embellama", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        input=stdin,
        check=False,
    )


def test_python_dash_m_is_the_command() -> None:
    module = _cli("--help")
    assert module.returncode == 0, module.stderr
    assert "embed" in module.stdout and "serve" in module.stdout
    script = Path(sys.executable).with_name("embellama")
    command = subprocess.run([script, "--help"], capture_output=True, text=True, check=False)
    assert (command.returncode, command.stdout) == (module.returncode, module.stdout)
    bad = _cli("no-such-command")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


# Warnings llama.cpp prints on every load of the default model; nothing a user can act on.
LOAD_CHATTER = ("special_eos_id is not in special_eog_ids", "n_ctx_train")


def test_model_load_is_quiet_at_the_default_log_level(minilm_gguf: Path) -> None:
    for engine in ("auto", "llama.cpp"):  # auto runs it on ONNX Runtime
        quiet = _cli("embed", "hello", "--model-path", str(minilm_gguf), "--engine", engine)
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stderr == "", engine
    # llama.cpp's load chatter is still there, one level down.
    debug = _cli(
        "--log-level", "debug", "embed", "hello", "--model-path", str(minilm_gguf),
        "--engine", "llama.cpp",
    )  # fmt: skip
    assert debug.returncode == 0, debug.stderr
    assert all(line in debug.stderr for line in LOAD_CHATTER), debug.stderr


def test_embed_arguments(minilm_gguf: Path, engine: EmbeddingEngine) -> None:
    done = _cli("embed", "hello world", "second text", "--model-path", str(minilm_gguf))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["index"] for line in lines] == [0, 1]
    assert lines[0]["tokens"] == 4
    assert_batch_invariant(lines[0]["embedding"], engine.embed("hello world"))


def test_embed_jsonl_file(tmp_path: Path, minilm_gguf: Path, engine: EmbeddingEngine) -> None:
    source = tmp_path / "in.jsonl"
    texts = [f"document number {i} about topic {i % 7}" for i in range(300)]
    rows = [
        json.dumps({"id": f"doc-{i}", "text": t}) if i % 2 else json.dumps(t)
        for i, t in enumerate(texts)
    ]
    source.write_text("\n".join(rows) + "\n\n")
    target = tmp_path / "out.jsonl"
    done = _cli(
        "embed",
        "--input",
        str(source),
        "--output",
        str(target),
        "--model-path",
        str(minilm_gguf),
        "--dimensions",
        "128",
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(lines) == 300
    assert lines[1]["id"] == "doc-1"
    assert "id" not in lines[0]
    got = np.array([line["embedding"] for line in lines])
    assert_batch_invariant(got, engine.embed(texts, dimensions=128))


def test_embed_bad_jsonl_lines_are_bad_rows(tmp_path: Path, minilm_gguf: Path) -> None:
    """As in a Parquet job: each bad line is named, the rest are embedded; `--strict`
    stops at the first."""
    source = tmp_path / "bad.jsonl"
    source.write_text('"fine"\n{"text": "also fine", "other": 1}\n{"nope": 1}\nnot json\n')
    done = _cli("embed", "--input", str(source), "--model-path", str(minilm_gguf))
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["index"] for line in done.stdout.splitlines()] == [0, 1]
    assert done.stderr.splitlines() == [
        "embellama: bad row 2 (line 3): no text (missing, null or not a string)",
        "embellama: bad row 3 (line 4): not valid JSON (Expecting value)",
        "embellama: 2 rows embedded, 2 bad rows",
    ]
    strict = _cli("embed", "--input", str(source), "--model-path", str(minilm_gguf), "--strict")
    assert strict.returncode == 2 and strict.stdout == ""
    assert strict.stderr.splitlines() == [
        "embellama: error: row 2: no text (missing, null or not a string) (line 3)"
    ]


def test_inspect(minilm_gguf: Path) -> None:
    done = _cli("inspect", str(minilm_gguf), "--json")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["architecture"] == "bert"
    assert (facts["dimensions"], facts["context_length"], facts["pooling"]) == (384, 512, "mean")
    assert facts["file_size"] == minilm_gguf.stat().st_size
    assert len(facts["sha256"]) == 64


@pytest.mark.parametrize(
    "args", [["inspect", "/nonexistent.gguf"], ["embed", "x", "--model-path", "/nonexistent.gguf"]]
)
def test_missing_file_is_one_line(args: list[str]) -> None:
    done = _cli(*args)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "embellama: error: model file not found: /nonexistent.gguf"
    ]


def test_default_model_not_prepared_message(tmp_path: Path) -> None:
    env = {**os.environ, "EMBELLAMA_HOME": str(tmp_path)}
    done = _cli("embed", "hi", env=env)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "run: embellama models prepare-default" in done.stderr


@pytest.mark.slow
def test_prepare_default_is_idempotent(tmp_path: Path) -> None:
    env = {**os.environ, "EMBELLAMA_HOME": str(tmp_path)}
    first = _cli("models", "prepare-default", env=env)
    assert first.returncode == 0, first.stderr
    assert " prepared: " in first.stdout
    second = _cli("models", "prepare-default", env=env)
    assert "already prepared" in second.stdout
    manifest = json.loads((tmp_path / "models" / "all-MiniLM-L6-v2.f16.json").read_text())
    assert manifest["sha256"] in first.stdout
    done = _cli("embed", "hi", env=env)
    assert done.returncode == 0
    assert len(json.loads(done.stdout)["embedding"]) == 384


@pytest.mark.slow
def test_a_rerun_with_a_redis_cache_reads_instead_of_computing(
    tmp_path: Path, minilm_gguf: Path
) -> None:
    source = tmp_path / "corpus.jsonl"
    source.write_text("\n".join(json.dumps(f"corpus line {n} about caching") for n in range(300)))
    redis_server = start_redis(tmp_path)
    try:
        runs = []
        for name in ("first", "second"):
            target = tmp_path / f"{name}.jsonl"
            done = _cli(
                "embed",
                "--input",
                str(source),
                "--output",
                str(target),
                "--model-path",
                str(minilm_gguf),
                "--cache-url",
                redis_server.url,
            )
            assert done.returncode == 0, done.stderr
            runs.append((done.stderr, target.read_text()))
        assert "cache: 0 hits of 300 inputs" in runs[0][0]
        assert "cache: 300 hits of 300 inputs" in runs[1][0]
        assert runs[0][1] == runs[1][1]  # the same bytes, read back instead of computed
        plain = _cli("embed", "one", "--model-path", str(minilm_gguf))
        assert "cache:" not in plain.stderr  # off unless asked for
    finally:
        redis_server.stop()
