"""`embellama embed --output FILE.parquet`: a corpus job run as users run it, a process.

On a tiny random BERT (fast, so 200k rows fit in the suite): every input format, kept
columns, bad rows set aside, `--strict`, resume after SIGKILL and SIGINT at random points
(the result must equal an uninterrupted run), and flat memory on 200k rows.
"""

from __future__ import annotations

import csv
import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embellama import EmbeddingEngine
from tests.fixtures.tiny_encoders import build_tiny_encoder
from tests.tolerances import assert_batch_invariant

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("corpus-model"), "bert").gguf


def _rows(count: int, *, bad: bool = False, payload: int = 0) -> list[dict[str, object]]:
    rng = random.Random(count)
    words = ["local", "vector", "search", "index", "query", "document", "model", "bread", "flour"]
    rows: list[dict[str, object]] = []
    for i in range(count):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 40)))
        rows.append(
            {"doc_id": f"doc-{i}", "text": text, "lang": "en", "n": i, "pad": "x" * payload}
        )
    if bad:
        rows[3]["text"] = ""
        rows[10]["text"] = 12345
        del rows[20]["text"]
        rows[30]["text"] = "word " * 600  # over the 512-token context, truncation off
    return rows


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["doc_id", "text", "lang", "n", "pad"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=333)
    return path


def _embed_command(model: Path, source: Path, output: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "embellama",
        "embed",
        "--input",
        str(source),
        "--output",
        str(output),
        "--model-path",
        str(model),
        "--id-column",
        "doc_id",
        "--no-progress",
        *extra,
    ]


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_every_format_gives_the_library_vectors(
    tiny_model: Path, tmp_path: Path, suffix: str
) -> None:
    rows = _rows(700)
    source = _write(tmp_path / f"in{suffix}", rows)
    output = tmp_path / "out.parquet"
    done = _run(
        _embed_command(
            tiny_model, source, output, "--keep-columns", "lang,n", "--row-group-size", "256"
        )
    )
    assert done.returncode == 0, done.stderr
    assert "700 rows embedded" in done.stderr and "0 bad rows" in done.stderr
    table = pq.read_table(output)
    assert pq.ParquetFile(output).metadata.num_row_groups == 3
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 64)
    assert table.column_names == ["id", "embedding", "tokens", "lang", "n"]
    assert table.column("id").to_pylist() == [r["doc_id"] for r in rows]
    assert table.column("n").to_pylist() == [r["n"] for r in rows]
    texts = [str(r["text"]) for r in rows]
    with EmbeddingEngine.from_path(tiny_model) as engine:
        expected = engine.embed_with_details(texts)
    assert table.column("tokens").to_pylist() == list(expected.token_counts)
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    assert_batch_invariant(vectors, expected.vectors)
    assert not output.with_name("out.errors.jsonl").exists()
    assert not output.with_name("out.parquet.parts").exists()


def test_bad_rows_go_to_the_errors_file_and_strict_fails(tiny_model: Path, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", _rows(300, bad=True))
    output = tmp_path / "out.parquet"
    done = _run(_embed_command(tiny_model, source, output))
    assert done.returncode == 0, done.stderr
    errors_text = output.with_name("out.errors.jsonl").read_text()
    errors = [json.loads(line) for line in errors_text.splitlines()]
    assert [(e["row"], e["id"]) for e in errors] == [
        (3, "doc-3"),
        (10, "doc-10"),
        (20, "doc-20"),
        (30, "doc-30"),
    ]
    assert "empty" in errors[0]["reason"] and "not a string" in errors[1]["reason"]
    assert "limit of 512" in errors[3]["reason"]
    ids = pq.read_table(output).column("id").to_pylist()
    assert len(ids) == 296 and "doc-30" not in ids and "doc-31" in ids
    # The same rows with truncation: the long one is embedded, cut.
    again = _run(_embed_command(tiny_model, source, output, "--overwrite", "--truncate", "end"))
    assert again.returncode == 0 and "3 bad rows" in again.stderr
    strict = _run(_embed_command(tiny_model, source, tmp_path / "strict.parquet", "--strict"))
    assert strict.returncode != 0 and "row 3 (id 'doc-3'): empty text" in strict.stderr


def test_a_finished_output_is_kept(tiny_model: Path, tmp_path: Path) -> None:
    """The same command again finds its job done; another job does not overwrite it."""
    source = _write(tmp_path / "in.jsonl", _rows(50))
    output = tmp_path / "out.parquet"
    assert _run(_embed_command(tiny_model, source, output)).returncode == 0
    again = _run(_embed_command(tiny_model, source, output))
    assert again.returncode == 0 and "already complete" in again.stderr
    refused = _run(_embed_command(tiny_model, source, output, "--dimensions", "32"))
    assert refused.returncode != 0 and "exists; pass --overwrite" in refused.stderr


def test_killed_runs_resume_to_the_uninterrupted_result(tiny_model: Path, tmp_path: Path) -> None:
    """SIGKILL and SIGINT at random points, then the same command again, until it ends:
    no row lost or duplicated, finished row groups not recomputed, same result."""
    source = _write(tmp_path / "in.jsonl", _rows(6000, bad=True))
    reference = tmp_path / "reference.parquet"
    flags = ("--row-group-size", "200", "--keep-columns", "n")
    assert _run(_embed_command(tiny_model, source, reference, *flags)).returncode == 0
    output = tmp_path / "resumed.parquet"
    command = _embed_command(tiny_model, source, output, *flags)
    rng = random.Random(7)
    kills = 0
    resumed_from = []
    log = tmp_path / "runs.log"
    for attempt in range(30):
        with log.open("a") as handle:
            process = subprocess.Popen(command, stderr=handle)
        time.sleep(rng.uniform(0.8, 2.5))
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL if attempt % 2 == 0 else signal.SIGINT)
        process.wait(60)
        kills += 1
        parts = output.with_name("resumed.parquet.parts")
        resumed_from.append(len(list(parts.glob("part-*.parquet"))) if parts.exists() else 0)
    assert process.wait(120) == 0, log.read_text()
    assert kills >= 2, "the job finished before it could be interrupted twice"
    assert max(resumed_from) > 0  # some row groups were finished before a kill
    # ... and a restart skipped them instead of embedding them again.
    assert "finished row groups" in log.read_text()
    got, want = pq.read_table(output), pq.read_table(reference)
    for name in ("id", "tokens", "n"):
        assert got.column(name).to_pylist() == want.column(name).to_pylist()
    assert_batch_invariant(
        np.asarray(got.column("embedding").to_pylist(), dtype=np.float32),
        np.asarray(want.column("embedding").to_pylist(), dtype=np.float32),
    )
    assert (
        output.with_name("resumed.errors.jsonl").read_text()
        == reference.with_name("reference.errors.jsonl").read_text()
    )


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tiny_model: Path, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", _rows(6000))
    output = tmp_path / "out.parquet"
    command = _embed_command(tiny_model, source, output, "--row-group-size", "200")
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    parts = output.with_name("out.parquet.parts")
    deadline = time.monotonic() + 120
    while not list(parts.glob("part-*.parquet")) and time.monotonic() < deadline:
        assert process.poll() is None, "the job ended before it could be interrupted"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"interrupted; finished row groups are kept in {parts}" in stderr
    assert "run the same command again to resume" in stderr
    resumed = _run(command)
    assert resumed.returncode == 0 and "finished row groups" in resumed.stderr


def test_other_options_do_not_mix_with_unfinished_parts(tiny_model: Path, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", _rows(3000))
    output = tmp_path / "out.parquet"
    process = subprocess.Popen(
        _embed_command(tiny_model, source, output, "--row-group-size", "100")
    )
    parts = output.with_name("out.parquet.parts")
    deadline = time.monotonic() + 60
    while not list(parts.glob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    mixed = _run(_embed_command(tiny_model, source, output, "--dimensions", "32"))
    assert mixed.returncode != 0 and "holds parts of a different job" in mixed.stderr


def _peak_rss_mb(command: Sequence[str], log: Path) -> float:
    with log.open("w") as handle:
        process = subprocess.Popen(command, stderr=handle)
    peak = 0.0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.05)
    assert process.wait() == 0, log.read_text()
    return peak


def test_memory_stays_flat_on_200k_rows(tiny_model: Path, tmp_path: Path) -> None:
    """200k rows of ~500 bytes (100 MB of text): peak memory within 40 MB of a 20k-row
    run's; holding the rows, the vectors or the output would add far more."""
    peaks = {}
    for count in (20_000, 200_000):
        source = _write(tmp_path / f"in-{count}.jsonl", _rows(count, payload=400))
        output = tmp_path / f"out-{count}.parquet"
        command = _embed_command(tiny_model, source, output, "--keep-columns", "pad")
        peaks[count] = _peak_rss_mb(command, tmp_path / f"run-{count}.log")
        assert pq.ParquetFile(output).metadata.num_rows == count
    assert peaks[200_000] - peaks[20_000] < 40, peaks


def _unfinished(command: list[str], output: Path) -> None:
    """Run `command` until its first row group is on disk, then kill it."""
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    parts = output.with_name(output.name + ".parts")
    deadline = time.monotonic() + 120
    while not list(parts.glob("part-*.parquet")) and time.monotonic() < deadline:
        assert process.poll() is None, "the job ended before it could be interrupted"
        time.sleep(0.02)
    process.kill()
    process.wait()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--add-eos",), "add_eos: None -> True"),
        (("--n-ctx", "128"), "n_ctx: None -> 128"),
        (("--normalization", "none"), "normalization: 'l2' -> 'none'"),
    ],
)
def test_a_resume_with_another_vector_option_is_refused_naming_it(
    tiny_model: Path, tmp_path: Path, flags: tuple[str, ...], named: str
) -> None:
    """Unfinished parts and a finished file both remember every option that changes a
    vector: another value is refused, with the difference named, never mixed in."""
    source = _write(tmp_path / "in.jsonl", _rows(3000))
    output = tmp_path / "out.parquet"
    command = _embed_command(tiny_model, source, output, "--row-group-size", "100")
    _unfinished(command, output)
    mixed = _run([*command, *flags])
    assert mixed.returncode == 2 and "holds parts of a different job" in mixed.stderr
    assert named in mixed.stderr, mixed.stderr
    assert _run(command).returncode == 0
    finished = _run([*command, *flags])
    assert finished.returncode == 2 and "already complete" not in finished.stderr
    assert "exists" in finished.stderr and named in finished.stderr, finished.stderr


def test_a_model_file_replaced_in_place_is_another_job(tiny_model: Path, tmp_path: Path) -> None:
    """Same path, same size, other weights: the fingerprint of the file tells them apart."""
    model = tmp_path / "model.gguf"
    model.write_bytes(tiny_model.read_bytes())
    source = _write(tmp_path / "in.jsonl", _rows(100))
    output = tmp_path / "out.parquet"
    command = _embed_command(model, source, output)
    assert _run(command).returncode == 0
    data = bytearray(model.read_bytes())
    data[-64:] = bytes(64)  # the last tensor's last values
    model.write_bytes(bytes(data))
    again = _run(command)
    assert again.returncode == 2 and "model_fingerprint" in again.stderr, again.stderr


def test_row_group_size_zero_is_one_line_error(tiny_model: Path, tmp_path: Path) -> None:
    source = _write(tmp_path / "in.jsonl", _rows(10))
    command = _embed_command(tiny_model, source, tmp_path / "out.parquet", "--row-group-size", "0")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "embellama embed: error: argument --row-group-size: must be >= 1, got 0 (see --help)"
    ]


def _quoted_csv(path: Path, count: int) -> list[dict[str, object]]:
    """Over 1 MB (the CSV reader's block) of texts holding newlines, with two broken
    records (a field too many, two too few) among them."""
    rows = [
        {"doc_id": f"doc-{i}", "text": f"first line {i}\nsecond line " + "word " * 30, "n": i}
        for i in range(count)
    ]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["doc_id", "text", "n"])
        for i, row in enumerate(rows):
            writer.writerow(row.values())
            if i == count // 2:
                handle.write("broken-1,text,1,extra field\n")
        handle.write("broken-2\n")
    return rows


def test_csv_with_quoted_newlines_and_broken_records(tiny_model: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    rows = _quoted_csv(source, 6000)
    assert source.stat().st_size > 1_100_000
    from embellama.corpus import open_source

    assert open_source(source).total_rows() == len(rows)  # records, not lines
    output = tmp_path / "out.parquet"
    command = _embed_command(
        tiny_model, source, output, "--keep-columns", "n", "--row-group-size", "1000"
    )
    done = _run(command)
    assert done.returncode == 0, done.stderr
    assert f"{len(rows)} rows embedded" in done.stderr and "2 bad rows" in done.stderr
    table = pq.read_table(output)
    assert table.column("id").to_pylist() == [r["doc_id"] for r in rows]
    assert table.column("n").to_pylist() == [r["n"] for r in rows]
    lines = source.read_text().splitlines()
    errors = [json.loads(line) for line in errors_text(output).splitlines()]
    assert [lines[e["line"] - 1] for e in errors] == ["broken-1,text,1,extra field", "broken-2"]
    assert all("malformed CSV record" in e["reason"] for e in errors)
    with EmbeddingEngine.from_path(tiny_model) as engine:
        expected = engine.embed([str(rows[0]["text"]), str(rows[-1]["text"])])
    vectors = table.column("embedding")
    assert_batch_invariant(
        np.asarray([vectors[0].as_py(), vectors[-1].as_py()], np.float32), expected
    )


def errors_text(output: Path) -> str:
    return output.with_name(output.stem + ".errors.jsonl").read_text()


def test_jsonl_type_drift_and_bad_lines_are_bad_rows(tiny_model: Path, tmp_path: Path) -> None:
    """Ids and kept columns take their type from the first rows; a later row of another
    type, or a line that is not JSON, is a bad row with its line, and a resume agrees."""
    rows = _rows(450)
    for i in range(450):
        rows[i]["doc_id"] = i
    rows[150]["doc_id"] = "a-string-id"  # a later chunk's id is a string
    rows[260]["n"] = "seven"  # a kept column turns to text
    rows[20]["n"] = 2.5  # ... or to a float, in the first chunk
    source = tmp_path / "in.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines[300] = '{"doc_id": 300, "text": "cut off'
    source.write_text("\n".join(lines) + "\n\n")
    output = tmp_path / "out.parquet"
    command = _embed_command(
        tiny_model, source, output, "--keep-columns", "n", "--row-group-size", "100"
    )
    done = _run(command)
    assert done.returncode == 0 and "4 bad rows" in done.stderr, done.stderr
    errors = [json.loads(line) for line in errors_text(output).splitlines()]
    assert [(e["row"], e["line"]) for e in errors] == [(20, 21), (150, 151), (260, 261), (300, 301)]
    assert "'a-string-id'" in errors[1]["reason"] and "int64" in errors[1]["reason"]
    assert "not valid JSON" in errors[3]["reason"]
    table = pq.read_table(output)
    assert table.schema.field("id").type == pa.int64()
    assert table.num_rows == 446 and 150 not in table.column("id").to_pylist()
    again = _run(command)
    assert again.returncode == 0 and "already complete" in again.stderr


def test_the_job_says_which_version_made_its_vectors(tiny_model: Path, tmp_path: Path) -> None:
    """Vectors of two versions of a name never compare: the job names the version it
    ran, and a resume with another version is another job."""
    source = _write(tmp_path / "in.jsonl", _rows(20))
    output = tmp_path / "out.parquet"
    versioned = ("--model-name", "m", "--model-version", "v2")
    done = _run(_embed_command(tiny_model, source, output, *versioned))
    assert done.returncode == 0, done.stderr
    assert "embedded by m@v2 (version v2)" in done.stderr
    other = _run(_embed_command(tiny_model, source, output, "--model-name", "m"))
    assert other.returncode != 0 and "exists; pass --overwrite" in other.stderr
    plain = _run(_embed_command(tiny_model, source, tmp_path / "plain.parquet"))
    assert plain.returncode == 0 and "(version 1)" in plain.stderr
    texts = [sys.executable, "-m", "embellama", "embed", "--model-path", str(tiny_model)]
    quiet = _run([*texts, "one text"])
    assert quiet.returncode == 0 and quiet.stderr == ""  # stdout is the vectors: no chatter
    named = _run([*texts, *versioned, "one text"])
    assert (
        named.returncode == 0 and named.stderr.strip() == "embellama: embedded by m@v2 (version v2)"
    )
