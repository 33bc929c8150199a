"""Bad rows and named columns in `embellama embed`: one rule whatever the formats.

A bad row (a number for text, a text over the context) is set aside with its row, line
and reason in JSONL output as in Parquet output; a column named on the command line
that the input lacks is a one-line error before any work, in JSONL, CSV and Parquet;
a failed job leaves no output, no half-written file and no parts manifest behind.
Real processes on a tiny random BERT (fast).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.redis_server import start_redis
from tests.fixtures.tiny_encoders import build_tiny_encoder
from tests.tolerances import assert_batch_invariant


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("rows-model"), "bert").gguf


def _rows(count: int = 20, *, long_row: int | None = 16) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [
        {"doc": f"d{i}", "text": f"row {i} about bread", "n": i} for i in range(count)
    ]
    rows[5]["text"] = 123  # a number for text
    if long_row is not None:
        rows[long_row]["text"] = "word " * 900  # over the 512-token context
    return rows


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        table = pa.Table.from_pylist([{**r, "text": str(r["text"])} for r in rows])
        pq.write_table(table, path)
    return path


def _embed(model: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "embellama", "embed", "--model-path", str(model)]
    command += ["--no-progress", "--workers", "0", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def _errors(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_output_sets_bad_rows_aside_as_parquet_does(tiny_model: Path, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", _rows())
    jsonl = _embed(tiny_model, "--input", source, "--output", tmp_path / "out.jsonl",
                   "--id-column", "doc", "--dimensions", "16")  # fmt: skip
    assert jsonl.returncode == 0, jsonl.stderr
    assert "18 rows embedded, 2 bad rows listed in" in jsonl.stderr
    errors = _errors(tmp_path / "out.errors.jsonl")
    assert [(e["row"], e["line"], e["id"]) for e in errors] == [(5, 6, "d5"), (16, 17, "d16")]
    reason = str(errors[1]["reason"])
    # The row's own reason: no "input 15" counted among the rows of one engine call.
    assert reason.startswith("the text has 902 tokens") and "input" not in reason
    assert "'chunk'" in reason
    parquet = _embed(tiny_model, "--input", source, "--output", tmp_path / "out.parquet",
                     "--id-column", "doc", "--dimensions", "16")  # fmt: skip
    assert parquet.returncode == 0, parquet.stderr
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == [i for i in range(20) if i not in (5, 16)]
    table = pq.read_table(tmp_path / "out.parquet")
    assert [line["id"] for line in lines] == table.column("id").to_pylist()
    assert_batch_invariant(
        np.array([line["embedding"] for line in lines]),
        np.array(table.column("embedding").to_pylist()),
    )


def test_bad_rows_read_the_same_in_both_outputs(tiny_model: Path, tmp_path: Path) -> None:
    """The two outputs' errors files, compared entry by entry (written one after the
    other, so neither can be read for the other)."""
    source = _write(tmp_path / "in.jsonl", _rows())
    found = []
    for suffix in (".jsonl", ".parquet"):
        output = tmp_path / f"out{suffix}"
        done = _embed(tiny_model, "--input", source, "--output", output, "--id-column", "doc")
        assert done.returncode == 0, done.stderr
        found.append(sorted(_errors(tmp_path / "out.errors.jsonl"), key=lambda e: str(e["row"])))
        (tmp_path / "out.errors.jsonl").unlink()
    assert found[0] == found[1]


def test_one_bad_row_is_one_bad_row(tiny_model: Path, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", _rows(long_row=None))
    for output in (tmp_path / "out.jsonl", tmp_path / "out.parquet"):
        done = _embed(tiny_model, "--input", source, "--output", output)
        assert done.returncode == 0, done.stderr
        assert "19 rows embedded" in done.stderr and ", 1 bad row listed in" in done.stderr
        (tmp_path / "out.errors.jsonl").unlink()


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_strict_failure_leaves_nothing_behind(
    tiny_model: Path, tmp_path: Path, suffix: str
) -> None:
    source = _write(tmp_path / "in.jsonl", _rows())
    output = tmp_path / f"out{suffix}"
    done = _embed(tiny_model, "--input", source, "--output", output, "--id-column", "doc",
                  "--strict")  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "embellama: error: row 5 (id 'd5'): text is a int, not a string (line 6)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_a_job_that_fails_before_its_first_part_leaves_no_manifest(
    tiny_model: Path, tmp_path: Path
) -> None:
    source = _write(tmp_path / "in.jsonl", _rows())
    done = _embed(tiny_model, "--input", source, "--output", tmp_path / "out.parquet",
                  "--dimensions", "9999")  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert "dimensions must be an integer between 1 and 64" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
@pytest.mark.parametrize(
    ("flag", "value"),
    [("--text-column", "body"), ("--keep-columns", "n,nope"), ("--id-column", "nope")],
)
def test_a_missing_column_is_one_line_before_any_work(
    tiny_model: Path, tmp_path: Path, suffix: str, flag: str, value: str
) -> None:
    source = _write(tmp_path / f"in{suffix}", _rows())
    missing = value.split(",")[-1]
    done = _embed(tiny_model, "--input", source, "--output", tmp_path / "out.parquet", flag, value)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"embellama: error: {source}: no column {missing!r}"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]


@pytest.mark.parametrize(("flag", "value"), [("--text-column", "body"), ("--id-column", "nope")])
def test_a_missing_column_in_jsonl_output_is_the_same_error(
    tiny_model: Path, tmp_path: Path, flag: str, value: str
) -> None:
    source = _write(tmp_path / "in.jsonl", _rows())
    done = _embed(tiny_model, "--input", source, "--output", tmp_path / "out.jsonl", flag, value)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"embellama: error: {source}: no column {value!r} in its first 1024 non-blank lines"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.slow
def test_a_parquet_job_says_what_the_cache_served(tiny_model: Path, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", _rows(long_row=None))
    output = tmp_path / "out.parquet"
    redis_server = start_redis(tmp_path)
    try:
        runs = [
            _embed(
                tiny_model,
                "--input",
                source,
                "--output",
                output,
                "--overwrite",
                "--cache-url",
                redis_server.url,
            )
            for _ in range(2)
        ]
    finally:
        redis_server.stop()
    assert all(run.returncode == 0 for run in runs), runs[0].stderr + runs[1].stderr
    assert "embellama: cache: 0 hits of 19 inputs" in runs[0].stderr
    assert "embellama: cache: 19 hits of 19 inputs" in runs[1].stderr
    plain = _embed(tiny_model, "--input", source, "--output", output, "--overwrite")
    assert "cache:" not in plain.stderr


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_a_killed_job_s_workers_leave_quietly(minilm_gguf: Path, tmp_path: Path) -> None:
    """SIGKILL of the job mid-decode: its worker processes, orphaned, finish their batch,
    find nobody to answer and exit, without a BrokenPipeError traceback each."""
    rows: list[dict[str, object]] = [
        {"text": f"{i} " + "a long row of words to keep the workers busy " * 40}
        for i in range(4000)
    ]
    source = _write(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out.parquet"
    command = [sys.executable, "-m", "embellama", "embed", "--model-path", str(minilm_gguf),
               "--no-progress", "--workers", "2", "--row-group-size", "64",
               "--input", str(source), "--output", str(output)]  # fmt: skip
    with (tmp_path / "stderr.txt").open("w") as stderr:
        job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 120
            parts = output.with_name(output.name + ".parts")
            while not list(parts.glob("part-*.parquet")) and time.monotonic() < deadline:
                assert job.poll() is None, (tmp_path / "stderr.txt").read_text()
                time.sleep(0.05)
            workers = _children(job.pid)
            assert len(workers) >= 2  # the two workers (and multiprocessing's tracker)
            job.kill()
            job.wait(10)
        finally:
            job.kill()
        deadline = time.monotonic() + 60
        while any(map(_running, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not any(map(_running, workers))
    text = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in text and "BrokenPipeError" not in text, text
