"""Where a corpus job's finished work lives until the job is done, so it can resume.

Each finished chunk is one Parquet part (and its bad rows, one JSONL part), written to a
temporary name and renamed: a part either exists whole or not at all, whatever kills
the process. A manifest records which job the parts belong to; a run with other inputs
or options refuses to mix its rows in. When every chunk has its part, the parts are
copied in order, one row group each, into the final file, which is renamed into place.
The parts directory is renamed aside before it is deleted, so a kill during the deletion
never leaves a Parquet part whose errors part is already gone.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from embellama.corpus.manifest import differences
from embellama.errors import ConfigError, InputError
from embellama.rows import errors_path

__all__ = ["PartStore", "errors_path"]

_MANIFEST = "manifest.json"
# The finished file carries its job in the Parquet schema metadata, so running the same
# command again after it finished is recognized as done.
_JOB_KEY = "embellama.job"


class PartStore:
    def __init__(self, output: Path, job: dict[str, Any], *, overwrite: bool = False) -> None:
        """`job` describes everything the rows depend on (input file, model, options)."""
        self.output = output
        self.errors_path = errors_path(output)
        self.directory = output.with_name(output.name + ".parts")
        self.job = job
        self.complete = False
        # What a run killed while deleting its parts left behind.
        shutil.rmtree(self._removing(), ignore_errors=True)
        if overwrite:
            self._remove_parts()
        elif output.exists() and not self.directory.exists():
            # The same job finished before (perhaps killed just after): nothing to do.
            finished = _job_of(output)
            if finished == job:
                self.complete = True
                return
            changed = _changed(finished, job) if finished is not None else ""
            raise ConfigError(f"{output} exists; pass --overwrite to replace it{changed}")
        manifest = self.directory / _MANIFEST
        if manifest.exists():
            previous = _read_manifest(manifest)
            if previous != job:
                raise ConfigError(
                    f"{self.directory} holds parts of a different job{_changed(previous, job)}; "
                    "remove it or pass --overwrite to start over"
                )
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomically(manifest, json.dumps(job, indent=2, sort_keys=True).encode())

    def abandon(self, error: BaseException) -> None:
        """After a failed run: an input error (a bad row under `--strict`, an unreadable
        record) fails the same way on every rerun, and a fixed input is another job, so
        its parts go; after any other failure finished parts stay to resume from, and a
        directory with none (only the manifest) goes."""
        if isinstance(error, InputError) or not self.done():
            self._remove_parts()

    def done(self) -> set[int]:
        """Chunk numbers whose part is complete: its Parquet part and its errors part."""
        numbers = (
            int(path.stem.removeprefix("part-")) for path in self.directory.glob("part-*.parquet")
        )
        return {number for number in numbers if self._errors_part(number).exists()}

    def write(self, number: int, table: pa.Table, errors: list[dict[str, Any]]) -> None:
        """Errors first, then the Parquet part: a part's presence means both are whole."""
        lines = "".join(json.dumps(error, ensure_ascii=False) + "\n" for error in errors)
        _write_atomically(self._errors_part(number), lines.encode())
        temporary = self.directory / f".part-{number:08d}.parquet.tmp"
        pq.write_table(table, temporary)
        _fsync_rename(temporary, self._part(number))

    def finish(self, chunks: int, schema: pa.Schema) -> tuple[int, int]:
        """Join the parts into the output and the errors file; remove the parts.
        Returns (rows written, bad rows)."""
        rows = bad = 0
        temporary = self.output.with_name("." + self.output.name + ".tmp")
        stamped = schema.with_metadata({_JOB_KEY: json.dumps(self.job, sort_keys=True)})
        with pq.ParquetWriter(temporary, stamped) as writer:
            for table in self._tables(chunks):
                writer.write_table(table.replace_schema_metadata(stamped.metadata))
                rows += table.num_rows
        errors_temporary = self.errors_path.with_suffix(".jsonl.tmp")
        with errors_temporary.open("wb") as errors:
            for number in range(chunks):
                data = self._errors_part(number).read_bytes()
                bad += data.count(b"\n")
                errors.write(data)
        _fsync_rename(temporary, self.output)
        if bad:
            _fsync_rename(errors_temporary, self.errors_path)
        else:
            errors_temporary.unlink()
            self.errors_path.unlink(missing_ok=True)
        # Killed before this line, the next run finds the parts whole and joins them again.
        self._remove_parts()
        return rows, bad

    def _remove_parts(self) -> None:
        """Rename the directory aside (one atomic step), then delete it at leisure."""
        removing = self._removing()
        shutil.rmtree(removing, ignore_errors=True)
        try:
            os.replace(self.directory, removing)
        except FileNotFoundError:
            return
        shutil.rmtree(removing, ignore_errors=True)

    def _removing(self) -> Path:
        return self.directory.with_name("." + self.directory.name + ".removing")

    def _tables(self, chunks: int) -> Iterator[pa.Table]:
        for number in range(chunks):
            yield pq.read_table(self._part(number))

    def _part(self, number: int) -> Path:
        return self.directory / f"part-{number:08d}.parquet"

    def _errors_part(self, number: int) -> Path:
        return self.directory / f"errors-{number:08d}.jsonl"


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        job = json.loads(path.read_bytes())
    except (ValueError, OSError) as exc:
        raise ConfigError(
            f"{path} is not a readable job manifest ({exc}); remove its directory or pass "
            "--overwrite to start over"
        ) from None
    if not isinstance(job, dict):
        raise ConfigError(f"{path} is not a job manifest; pass --overwrite to start over")
    return job


def _changed(recorded: dict[str, Any], wanted: dict[str, Any]) -> str:
    """` (recorded -> this run: key: a -> b; ...)`: why this run is another job."""
    return f" (recorded -> this run: {'; '.join(differences(recorded, wanted))})"


def _job_of(output: Path) -> dict[str, Any] | None:
    try:
        metadata = pq.read_schema(output).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return None
    raw = metadata.get(_JOB_KEY.encode())
    job: dict[str, Any] | None = json.loads(raw) if raw else None
    return job


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name("." + path.name + ".tmp")
    temporary.write_bytes(data)
    _fsync_rename(temporary, path)


def _fsync_rename(source: Path, target: Path) -> None:
    with source.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(source, target)
