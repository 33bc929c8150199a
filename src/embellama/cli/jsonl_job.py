"""`embellama embed` with JSON lines out: texts or a JSONL file in, one line per row out.

Bad rows are handled as the Parquet corpus job handles them (embellama.rows): a row
with no text, a number for text, a line that is not JSON or a text over the context is
listed with its row, line and reason in `<output>.errors.jsonl` (on stderr when the
vectors go to stdout) and the job goes on, unless `--strict`. A file output is written
under a temporary name and renamed when the job is done: a failed job leaves no
half-written or empty file behind. No pyarrow here.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm

from embellama.config import Truncation
from embellama.engine import EmbeddingEngine
from embellama.errors import InputError
from embellama.rows import embed_rows, errors_path, plural

__all__ = ["JsonlTotals", "Record", "embed_records", "read_jsonl", "summary"]

_CHUNK = 256
# Lines read to find a named column: as many as the Parquet job reads its types from.
SAMPLE_LINES = 1024
_ABSENT = object()


@dataclass(frozen=True)
class Record:
    row: int  # 0-based position among the input's rows (blank lines are no rows)
    line: int | None  # 1-based line in the input file
    text: object  # as read: anything but a non-empty string is a bad row
    id: object = _ABSENT
    problem: str | None = None  # why the reader refused the line (not JSON)


@dataclass
class JsonlTotals:
    rows: int = 0
    bad_rows: int = 0
    cache_hits: int = 0


def read_jsonl(path: Path, text_column: str, id_column: str | None) -> Iterator[Record]:
    """Each non-blank line as a record: a JSON string is the text, an object holds it
    in `text_column` (and its id in `id_column`, else in "id" when present)."""
    handle = sys.stdin if str(path) == "-" else path.open("rb")
    with handle:
        row = 0
        for line, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            yield _record(row, line, raw, text_column, id_column)
            row += 1


def _record(
    row: int, line: int, raw: str | bytes, text_column: str, id_column: str | None
) -> Record:
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        return Record(row, line, None, problem="not valid UTF-8")
    except json.JSONDecodeError as exc:
        return Record(row, line, None, problem=f"not valid JSON ({exc.msg})")
    if isinstance(value, dict):
        identity = value.get(id_column or "id", _ABSENT)
        return Record(row, line, value.get(text_column), identity)
    if isinstance(value, str):
        return Record(row, line, value)
    return Record(row, line, None, problem=f"a JSON {type(value).__name__}, not a string or object")


def embed_records(
    engine: EmbeddingEngine,
    records: Iterator[Record],
    output: Path | None,
    *,
    truncate: Truncation,
    dimensions: int | None,
    strict: bool,
    bar: tqdm,
) -> JsonlTotals:
    totals = JsonlTotals()
    with _Output(output) as out:
        while chunk := list(islice(records, _CHUNK)):
            _embed_chunk(engine, chunk, out, totals, truncate, dimensions, strict)
            bar.update(len(chunk))
    return totals


def _embed_chunk(
    engine: EmbeddingEngine,
    chunk: list[Record],
    out: _Output,
    totals: JsonlTotals,
    truncate: Truncation,
    dimensions: int | None,
    strict: bool,
) -> None:
    texts = [None if record.problem else record.text for record in chunk]
    embedded = embed_rows(engine, texts, truncate, dimensions)
    reasons = {p: chunk[p].problem or reason for p, reason in embedded.problems.items()}
    if strict and reasons:
        first = min(reasons)
        record = chunk[first]
        identity = f" (id {record.id!r})" if record.id is not _ABSENT else ""
        line = f" (line {record.line})" if record.line is not None else ""
        raise InputError(f"row {record.row}{identity}: {reasons[first]}{line}")
    lines: dict[int, str] = {}
    if embedded.result is not None:
        result = embedded.result
        for position, vector, tokens in zip(
            embedded.keep, result.vectors, result.token_counts, strict=True
        ):
            lines[position] = json.dumps(_line(chunk[position], tokens, vector.tolist()))
        totals.cache_hits += result.cache_hits
    for position in range(len(chunk)):  # in input order
        if position in lines:
            out.vector(lines[position])
        else:
            out.bad(chunk[position], reasons[position])
    totals.rows += len(lines)
    totals.bad_rows += len(reasons)


def _line(record: Record, tokens: int, vector: list[float]) -> dict[str, Any]:
    line: dict[str, Any] = {"index": record.row, "tokens": tokens, "embedding": vector}
    if record.id is not _ABSENT:
        line["id"] = record.id
    return line


def _where(record: Record) -> str:
    line = f" (line {record.line})" if record.line is not None else ""
    return f"row {record.row}{line}"


class _Output:
    """Vectors to stdout, or to a file renamed into place only when the job succeeds;
    bad rows to `<output>.errors.jsonl`, or to stderr beside stdout."""

    def __init__(self, output: Path | None) -> None:
        self.output = output
        self._errors: TextIO | None = None
        self._errors_path = errors_path(output) if output is not None else None
        self._bad = 0

    def __enter__(self) -> _Output:
        if self.output is None:
            self._out: TextIO = sys.stdout
        else:
            self._out = _temporary(self.output).open("w")
        return self

    def vector(self, line: str) -> None:
        self._out.write(line + "\n")

    def bad(self, record: Record, reason: str) -> None:
        self._bad += 1
        if self._errors_path is None:
            print(f"embellama: bad {_where(record)}: {reason}", file=sys.stderr)
            return
        if self._errors is None:
            self._errors = _temporary(self._errors_path).open("w")
        entry: dict[str, Any] = {"row": record.row, "reason": reason}
        if record.id is not _ABSENT:
            entry["id"] = record.id
        if record.line is not None:
            entry["line"] = record.line
        self._errors.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.output is None:
            return
        self._out.close()
        if self._errors is not None:
            self._errors.close()
        paths = [self.output] + ([self._errors_path] if self._errors_path else [])
        for path in paths:
            temporary = _temporary(path)
            if exc_type is None and temporary.exists():
                os.replace(temporary, path)
            else:
                temporary.unlink(missing_ok=True)
        if exc_type is None and self._bad == 0 and self._errors_path is not None:
            self._errors_path.unlink(missing_ok=True)  # a stale list from an earlier run


def _temporary(path: Path) -> Path:
    return path.with_name("." + path.name + ".tmp")


def summary(totals: JsonlTotals, output: Path | None) -> str:
    """`embellama: 18 rows embedded, 2 bad rows listed in out.errors.jsonl`."""
    where = f" listed in {errors_path(output)}" if output is not None else ""
    return (
        f"embellama: {plural(totals.rows, 'row')} embedded, "
        f"{plural(totals.bad_rows, 'bad row')}{where if totals.bad_rows else ''}"
    )
