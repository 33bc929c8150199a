"""The corpus job's parts without a model: sources (CSV, JSONL, Parquet) cut into exact
chunks with bad rows named, the part store that makes a job resumable, and the manifest
whose differences refuse a resume of another job. Real files in a temporary directory."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embellama.config import ModelConfig
from embellama.corpus.manifest import differences, job_manifest, model_file_fingerprint
from embellama.corpus.parts import PartStore
from embellama.corpus.sources import Chunk, open_source
from embellama.errors import ConfigError, InputError


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _chunks(path: Path, **options: Any) -> list[Chunk]:
    return list(open_source(path, **options).chunks())


# --- sources -----------------------------------------------------------------------------


def test_an_unknown_format_and_a_missing_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown input format; use \.jsonl, \.csv or \.parquet"):
        open_source(tmp_path / "corpus.txt")
    with pytest.raises(InputError, match="no such file"):
        open_source(tmp_path / "corpus.csv")


def test_zero_rows_per_chunk_is_refused(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "c.jsonl", ["a"])
    with pytest.raises(InputError, match="rows per chunk must be >= 1, got 0"):
        open_source(path, chunk_rows=0)


def test_a_missing_column_is_named_before_any_work(tmp_path: Path) -> None:
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("text,id\nhello,1\n")
    with pytest.raises(InputError, match=r"no column 'body'; it has text, id"):
        open_source(csv_path, text_column="body")
    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["a"], "id": [1]}), parquet)
    with pytest.raises(InputError, match=r"no column 'title'; it has text, id"):
        open_source(parquet, keep_columns=["title"])
    jsonl = _jsonl(tmp_path / "c.jsonl", [{"text": "a"}, {"text": "b"}])
    with pytest.raises(InputError, match=r"no column 'id' in its first 2 non-blank lines"):
        open_source(jsonl, id_column="id", chunk_rows=2)


def test_chunk_k_holds_rows_k_times_n_whatever_the_row_groups(tmp_path: Path) -> None:
    """Parquet row groups of 3, chunks of 4: the chunks a resume finds are the same."""
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": [f"t{n}" for n in range(10)]}), path, row_group_size=3)
    source = open_source(path, chunk_rows=4)
    chunks = list(source.chunks())
    assert [(c.number, c.start_row, c.texts) for c in chunks] == [
        (0, 0, ["t0", "t1", "t2", "t3"]),
        (1, 4, ["t4", "t5", "t6", "t7"]),
        (2, 8, ["t8", "t9"]),
    ]
    assert chunks[2].ids.to_pylist() == [8, 9]  # row numbers when there is no id column
    assert source.total_rows() == 10


def test_csv_text_stays_text_and_ids_and_kept_columns_keep_their_type(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('text,id,lang\n42,7,en\n"two\nlines",8,de\n')
    (chunk,) = _chunks(path, id_column="id", keep_columns=["lang"])
    assert chunk.texts == ["42", "two\nlines"]
    assert chunk.ids.to_pylist() == [7, 8]
    assert chunk.kept is not None and chunk.kept.column("lang").to_pylist() == ["en", "de"]
    assert open_source(path).total_rows() == 2  # records, not lines


def test_a_csv_record_with_the_wrong_field_count_is_reported_with_its_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.csv"
    path.write_text('text,id\n"a\nb",1\nbad,2,extra\nc,3\n')
    (chunk,) = _chunks(path, id_column="id")
    assert chunk.texts == ["a\nb", "c"]
    assert chunk.rejected == (
        {"line": 4, "reason": "malformed CSV record: 3 fields, the header has 2"},
    )


def test_a_csv_column_whose_type_drifts_names_the_file(tmp_path: Path) -> None:
    """A CSV column's type comes from its first block: a later drift is an error for
    the file, with the advice to use a format whose rows can be set aside."""
    path = tmp_path / "c.csv"
    rows = "".join(f"t{n},{n}\n" for n in range(200_000))
    path.write_text("text,id\n" + rows + "last,not-a-number\n")
    with pytest.raises(InputError, match="convert the file to JSONL or Parquet"):
        _chunks(path, id_column="id", chunk_rows=300_000)


def test_jsonl_bad_lines_are_bad_rows_in_their_place(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "a"}\n\n{not json\n"bare"\n{"text": 5}\n\xff\xfe\n{"text": null}\n')
    (chunk,) = _chunks(path)
    assert chunk.lines == [1, 3, 4, 5, 6, 7]  # the blank line is no row
    assert chunk.texts == ["a", None, "bare", 5, None, None]
    assert chunk.problems == {
        1: "not valid JSON (Expecting property name enclosed in double quotes)",
        4: "not valid UTF-8",
    }
    assert chunk.ids.to_pylist() == [0, 1, 2, 3, 4, 5]


def test_jsonl_type_drift_is_a_bad_row_not_a_failed_file(tmp_path: Path) -> None:
    """The id column is int64 from the first chunk's rows; a string or a 2.5 later
    (which pyarrow would silently make 2) is that row's problem, its id null."""
    rows: list[object] = [{"text": "a", "id": 1}, {"text": "b", "id": 2}]
    rows += [{"text": "c", "id": "x"}, {"text": "d", "id": 2.5}, {"text": "e", "id": 5}]
    first, second, third = _chunks(_jsonl(tmp_path / "c.jsonl", rows), id_column="id", chunk_rows=2)
    assert first.ids.type == pa.int64() and first.problems == {}
    assert second.ids.to_pylist() == [None, None]
    assert second.problems == {
        0: "column 'id' holds the str 'x' here; its first rows made it int64",
        1: "column 'id' holds the float 2.5 here; its first rows made it int64",
    }
    assert third.ids.to_pylist() == [5]


# --- parts: how a job is split, resumed and finished -------------------------------------

JOB = {"input": "corpus.jsonl", "truncate": "none", "model_fingerprint": "abc"}


SCHEMA = pa.schema({"id": pa.int64(), "v": pa.float64()})


def _table(start: int, rows: int) -> pa.Table:
    ids = list(range(start, start + rows))
    return pa.table({"id": ids, "v": [float(n) for n in ids]}, schema=SCHEMA)


def test_parts_resume_the_same_job_and_finish_in_order(tmp_path: Path) -> None:
    output = tmp_path / "vectors.parquet"
    store = PartStore(output, JOB)
    store.write(1, _table(2, 2), [{"id": 3, "error": "too long"}])
    assert store.done() == {1}
    resumed = PartStore(output, dict(JOB))  # a second run of the same command
    assert resumed.done() == {1}
    resumed.write(0, _table(0, 2), [])
    assert resumed.finish(2, SCHEMA) == (4, 1)
    assert pq.read_table(output).column("id").to_pylist() == [0, 1, 2, 3]
    assert pq.ParquetFile(output).metadata.num_row_groups == 2
    assert output.with_name("vectors.errors.jsonl").read_text() == (
        '{"id": 3, "error": "too long"}\n'
    )
    assert not resumed.directory.exists()
    assert PartStore(output, JOB).complete  # the finished job is recognized as done


def test_parts_of_another_job_are_refused_with_the_difference(tmp_path: Path) -> None:
    output = tmp_path / "vectors.parquet"
    PartStore(output, JOB).write(0, _table(0, 1), [])
    other = {**JOB, "truncate": "end"}
    with pytest.raises(ConfigError, match=r"holds parts of a different job \(recorded -> this"):
        PartStore(output, other)
    with pytest.raises(ConfigError, match=r"truncate: 'none' -> 'end'"):
        PartStore(output, other)
    assert PartStore(output, other, overwrite=True).done() == set()


def test_a_finished_output_of_another_job_is_not_replaced(tmp_path: Path) -> None:
    output = tmp_path / "vectors.parquet"
    store = PartStore(output, JOB)
    store.write(0, _table(0, 1), [])
    store.finish(1, SCHEMA)
    with pytest.raises(ConfigError, match=r"exists; pass --overwrite to replace it \(recorded"):
        PartStore(output, {**JOB, "model_fingerprint": "def"})


def test_a_broken_manifest_is_refused(tmp_path: Path) -> None:
    output = tmp_path / "vectors.parquet"
    PartStore(output, JOB)
    (tmp_path / "vectors.parquet.parts" / "manifest.json").write_text("{truncated")
    with pytest.raises(ConfigError, match="is not a readable job manifest"):
        PartStore(output, JOB)


def test_abandon_keeps_finished_parts_except_after_an_input_error(tmp_path: Path) -> None:
    output = tmp_path / "vectors.parquet"
    store = PartStore(output, JOB)
    store.abandon(RuntimeError("killed"))  # nothing finished: nothing to resume from
    assert not store.directory.exists()
    store = PartStore(output, JOB)
    store.write(0, _table(0, 1), [])
    store.abandon(RuntimeError("killed"))
    assert PartStore(output, JOB).done() == {0}
    store.abandon(InputError("a bad row under --strict"))
    assert not store.directory.exists()


def test_a_kill_while_the_parts_are_deleted_leaves_a_finished_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting the parts is not atomic: killed halfway (SIGINT or SIGKILL during the
    deletion), a Parquet part whose errors part is already gone must not be taken for
    finished work. The directory is renamed aside first, so the next run finds the job done
    and sweeps the leftovers."""
    output = tmp_path / "vectors.parquet"
    store = PartStore(output, JOB)
    store.write(0, _table(0, 2), [{"id": 1, "error": "empty"}])
    store.write(1, _table(2, 2), [])

    def killed_halfway(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        if not Path(path).exists():
            return
        for errors in Path(path).glob("errors-*.jsonl"):
            errors.unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        store.finish(2, SCHEMA)
    monkeypatch.undo()
    again = PartStore(output, JOB)
    assert again.complete
    assert pq.read_table(output).column("id").to_pylist() == [0, 1, 2, 3]
    assert output.with_name("vectors.errors.jsonl").read_text() == '{"id": 1, "error": "empty"}\n'
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "vectors.errors.jsonl",
        "vectors.parquet",
    ]


def test_a_part_without_its_errors_part_is_not_finished(tmp_path: Path) -> None:
    output = tmp_path / "vectors.parquet"
    store = PartStore(output, JOB)
    store.write(0, _table(0, 1), [])
    store.write(1, _table(1, 1), [])
    (store.directory / "errors-00000000.jsonl").unlink()
    assert PartStore(output, JOB).done() == {1}


# --- manifest: a changed input or option is another job ----------------------------------


def _manifest(input_path: Path, model: ModelConfig, **options: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "text_column": "text",
        "id_column": None,
        "keep_columns": [],
        "row_group_size": 1024,
        "truncate": "none",
        "dimensions": None,
    }
    return job_manifest(input_path, model, **{**settings, **options})


def test_a_changed_input_or_option_invalidates_a_resume(tmp_path: Path, minilm_gguf: Path) -> None:
    corpus = _jsonl(tmp_path / "c.jsonl", ["hello"])
    model = ModelConfig(minilm_gguf)
    recorded = _manifest(corpus, model)
    assert differences(recorded, _manifest(corpus, model)) == []
    assert differences(recorded, _manifest(corpus, model, truncate="end")) == [
        "truncate: 'none' -> 'end'"
    ]
    assert differences(recorded, _manifest(corpus, ModelConfig(minilm_gguf, add_eos=False))) == [
        "add_eos: None -> False"
    ]
    stat = corpus.stat()
    corpus.write_text('"hellO"\n')  # same size and mtime: the input is known by its stat
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert differences(recorded, _manifest(corpus, model)) == []
    corpus.write_text('"hello, world"\n')
    changed = differences(recorded, _manifest(corpus, model))
    assert [line.split(":")[0] for line in changed] == ["input_mtime_ns", "input_size"]


def test_another_model_file_at_the_same_path_invalidates_a_resume(
    tmp_path: Path, minilm_gguf: Path, gemma3_gguf: Path
) -> None:
    corpus = _jsonl(tmp_path / "c.jsonl", ["hello"])
    model = tmp_path / "model.gguf"
    shutil.copyfile(minilm_gguf, model)
    recorded = _manifest(corpus, ModelConfig(model))
    model.unlink()
    model.symlink_to(gemma3_gguf)
    changed = differences(recorded, _manifest(corpus, ModelConfig(model)))
    assert [line.split(":")[0] for line in changed] == ["model", "model_fingerprint"]
    assert recorded["model_fingerprint"] == model_file_fingerprint(minilm_gguf)
