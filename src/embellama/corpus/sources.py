"""Read a corpus (JSONL, CSV or Parquet) as fixed-size chunks of rows, streaming.

Chunk k always holds rows [k * rows, (k + 1) * rows) of the input, whatever the format's
own block sizes: a resumed job finds the same chunks as the run it continues. Memory
holds one chunk (plus the reader's buffer), never the file. A row the reader cannot
take (a CSV record with the wrong field count, a JSON line that does not parse, a value
whose type differs from the column's first rows) is named with its line and reported,
never an error for the whole file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from embellama.errors import InputError
from embellama.jsonl import check_jsonl_columns

__all__ = ["Chunk", "CorpusSource", "open_source"]

FORMATS = ("jsonl", "csv", "parquet")
# What pyarrow raises when a value does not fit a column's type.
_ARROW_TYPE_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError)


@dataclass(frozen=True)
class Chunk:
    """One output row group's worth of input rows."""

    number: int
    start_row: int
    texts: list[Any]  # as read: a non-string here is a bad row, reported, not embedded
    ids: pa.Array  # typed as the output's id column; null where `problems` has the row
    kept: pa.Table | None  # the columns carried through, same rows
    lines: list[int] | None = None  # each row's line in the input, where the format has one
    problems: dict[int, str] = field(default_factory=dict)  # position -> why the reader refused
    # Input records that are no row at all (a CSV record with the wrong field count):
    # {"line", "reason"}, reported with this chunk.
    rejected: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class CorpusSource:
    path: Path
    format: str
    text_column: str
    id_column: str | None
    keep_columns: tuple[str, ...]
    chunk_rows: int

    def __post_init__(self) -> None:
        # Zero would cut the input into empty chunks forever.
        if self.chunk_rows < 1:
            raise InputError(f"rows per chunk must be >= 1, got {self.chunk_rows}")

    def check_columns(self) -> None:
        """Every column named for the job is in the input, or a one-line error now,
        before any work or output: one rule for every format (a CSV header, a Parquet
        schema, a JSONL file's first chunk of lines)."""
        columns = self._columns()
        if self.format == "parquet":
            _check_columns(self.path, pq.ParquetFile(self.path).schema_arrow.names, columns)
        elif self.format == "csv":
            _check_columns(self.path, _csv_header(self.path), columns)
        else:
            check_jsonl_columns(self.path, columns, self.text_column, self.chunk_rows)

    def total_rows(self) -> int | None:
        """Rows in the input: free for Parquet (footer), one pass otherwise (CSV records,
        not lines: a quoted value may hold newlines)."""
        if self.format == "parquet":
            return int(pq.ParquetFile(self.path).metadata.num_rows)
        if self.format == "csv":
            return int(sum(b.num_rows for b in self._csv_reader([self.text_column], [])))
        with self.path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())

    def chunks(self) -> Iterator[Chunk]:
        if self.format == "jsonl":
            yield from self._jsonl_chunks()
            return
        rejected: list[dict[str, Any]] = []  # filled by the CSV reader as it goes
        number = -1
        with _CsvLines(self.path) as lines:
            for number, table in enumerate(_exact(self._arrow_tables(rejected), self.chunk_rows)):
                yield self._chunk(number, table, lines.located(rejected))
            if rejected:  # records refused after the last row: a chunk of their own
                yield self._chunk(number + 1, self._empty_table(), lines.located(rejected))

    def _columns(self) -> list[str]:
        names = [self.text_column, *self.keep_columns]
        if self.id_column is not None:
            names.append(self.id_column)
        return list(dict.fromkeys(names))

    def _chunk(self, number: int, table: pa.Table, rejected: list[dict[str, Any]]) -> Chunk:
        start = number * self.chunk_rows
        texts = table.column(self.text_column).to_pylist()
        ids = (
            table.column(self.id_column).combine_chunks()
            if self.id_column is not None
            else pa.array(range(start, start + table.num_rows), pa.int64())
        )
        kept = table.select(list(self.keep_columns)) if self.keep_columns else None
        return Chunk(number, start, texts, ids, kept, rejected=tuple(rejected))

    def _empty_table(self) -> pa.Table:
        return pa.table({name: pa.array([], pa.string()) for name in self._columns()})

    def _arrow_tables(self, rejected: list[dict[str, Any]]) -> Iterator[pa.Table]:
        columns = self._columns()
        if self.format == "parquet":
            handle = pq.ParquetFile(self.path)
            _check_columns(self.path, handle.schema_arrow.names, columns)
            for batch in handle.iter_batches(batch_size=self.chunk_rows, columns=columns):
                yield pa.Table.from_batches([batch])
            return
        reader = self._csv_reader(columns, rejected)
        _check_columns(self.path, reader.schema.names, columns)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:  # a value unlike the column's first block
                raise InputError(
                    f"{self.path}: {exc} (a CSV column's type is read from the file's first "
                    "MiB; convert the file to JSONL or Parquet to have such rows set aside)"
                ) from None
            yield pa.Table.from_batches([batch])

    def _csv_reader(
        self, columns: list[str], rejected: list[dict[str, Any]]
    ) -> pa_csv.CSVStreamingReader:
        def refuse(row: pa_csv.InvalidRow) -> str:
            rejected.append(
                {
                    "record": row.number,  # the header is record 1
                    "reason": f"malformed CSV record: {row.actual_columns} fields, "
                    f"the header has {row.expected_columns}",
                }
            )
            return "skip"

        try:
            return pa_csv.open_csv(
                self.path,
                # One thread: refused records are then seen in file order, every run.
                read_options=pa_csv.ReadOptions(use_threads=False),
                parse_options=pa_csv.ParseOptions(
                    newlines_in_values=True, invalid_row_handler=refuse
                ),
                convert_options=pa_csv.ConvertOptions(
                    include_columns=columns,
                    # Text stays text even when a column looks numeric; ids keep their type.
                    column_types={self.text_column: pa.string()},
                    strings_can_be_null=False,
                ),
            )
        except pa.ArrowKeyError:  # a wanted column is not in the header
            _check_columns(self.path, _csv_header(self.path), columns)
            raise
        except pa.ArrowInvalid as exc:  # an empty file, say
            raise InputError(f"{self.path}: {exc}") from None

    def _jsonl_chunks(self) -> Iterator[Chunk]:
        """JSON lines: objects, or bare strings (the text). Built by hand, not by
        pyarrow's reader, so a row whose text is a number or null, a line that is not
        JSON, or a value of another type than its column's first rows is a bad row of
        its own instead of a type error for the whole file."""
        types: dict[str, pa.DataType] | None = None
        rows: list[tuple[int, object]] = []
        number = 0
        for row in self._jsonl_rows():
            rows.append(row)
            if len(rows) == self.chunk_rows:
                types = types or self._jsonl_types(rows)
                yield self._jsonl_chunk(number, rows, types)
                rows, number = [], number + 1
        if rows:
            yield self._jsonl_chunk(number, rows, types or self._jsonl_types(rows))

    def _jsonl_rows(self) -> Iterator[tuple[int, object]]:
        """(line number, value) per non-blank line; a line that is not JSON is a row
        whose value says why."""
        with self.path.open("rb") as handle:
            for line, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    yield line, json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    yield line, _Unparsed("not valid UTF-8")
                except json.JSONDecodeError as exc:
                    yield line, _Unparsed(f"not valid JSON ({exc.msg})")

    def _jsonl_types(self, rows: list[tuple[int, object]]) -> dict[str, pa.DataType]:
        """Each carried column's type, from its first value in the first chunk; every
        later row must match it. A column with no value there is a string column."""
        types: dict[str, pa.DataType] = {}
        for name in self._columns()[1:]:
            values = (_field(value, name) for _, value in rows)
            first = next((v for v in values if v is not None), None)
            try:
                types[name] = pa.array([first]).type if first is not None else pa.string()
            except _ARROW_TYPE_ERRORS:
                types[name] = pa.string()
            if pa.types.is_null(types[name]):
                types[name] = pa.string()
        return types

    def _jsonl_chunk(
        self, number: int, rows: list[tuple[int, object]], types: dict[str, pa.DataType]
    ) -> Chunk:
        lines = [line for line, _ in rows]
        problems: dict[int, str] = {
            position: value.reason
            for position, (_, value) in enumerate(rows)
            if isinstance(value, _Unparsed)
        }
        records = [_record(value, self.text_column) for _, value in rows]
        # A text that is missing, null or not a string stays as read: a bad row.
        texts = [None if p in problems else r.get(self.text_column) for p, r in enumerate(records)]
        columns = {
            self.text_column: pa.array(
                [t if isinstance(t, str) else None for t in texts], pa.string()
            )
        }
        for name in self._columns()[1:]:
            values = [r.get(name) for r in records]
            columns[name] = _typed_column(name, values, types[name], problems)
        start = number * self.chunk_rows
        ids = (
            columns[self.id_column]
            if self.id_column is not None
            else pa.array(range(start, start + len(rows)), pa.int64())
        )
        kept = pa.table({n: columns[n] for n in self.keep_columns}) if self.keep_columns else None
        return Chunk(number, start, texts, ids, kept, lines, problems)


@dataclass(frozen=True)
class _Unparsed:
    """A JSON line that did not parse, kept in its place so row numbers stay put."""

    reason: str


def _record(value: object, text_column: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return {} if isinstance(value, _Unparsed) else {text_column: value}


def _field(value: object, name: str) -> object:
    return value.get(name) if isinstance(value, dict) else None


def _typed_column(
    name: str, values: list[Any], kind: pa.DataType, problems: dict[int, str]
) -> pa.Array:
    """`values` as a `kind` array; a value that does not fit is null, its row a problem."""
    if not _truncates(values, kind):
        try:
            return pa.array(values, kind)
        except _ARROW_TYPE_ERRORS:
            pass  # find the rows that do not fit: rare, so one at a time
    fitting: list[Any] = []
    for position, value in enumerate(values):
        if not _fits(value, kind):
            problems.setdefault(
                position,
                f"column {name!r} holds the {type(value).__name__} {_preview(value)} here; "
                f"its first rows made it {kind}",
            )
            value = None
        fitting.append(value)
    return pa.array(fitting, kind)


def _truncates(values: list[Any], kind: pa.DataType) -> bool:
    """pyarrow puts 2.5 in an integer column as 2, silently: a drift it does not see."""
    return pa.types.is_integer(kind) and any(
        isinstance(v, float) and not v.is_integer() for v in values
    )


def _fits(value: object, kind: pa.DataType) -> bool:
    if _truncates([value], kind):
        return False
    try:
        pa.array([value], kind)
    except _ARROW_TYPE_ERRORS:
        return False
    return True


class _CsvLines:
    """Where a CSV record starts, as a line number: pyarrow counts records, and a quoted
    value may hold newlines. Found by reading the file with Python's csv module up to
    that record, only when a record is refused, and never twice: free for a clean file,
    one pass at most otherwise."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO | None = None
        self._reader: Iterator[list[str]] | None = None
        self._record = 0  # records read so far (blank lines are none, as for pyarrow)
        self._line = 0  # the last line of the last record read

    def __enter__(self) -> _CsvLines:
        return self

    def __exit__(self, *_: object) -> None:
        if self._handle is not None:
            self._handle.close()

    def located(self, rejected: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`rejected` with each record's `line` in place of its number; emptied."""
        located = [{"line": self._start_of(r.pop("record")), **r} for r in rejected]
        rejected.clear()
        return located

    def _start_of(self, record: int | None) -> int | None:
        if record is None:
            return None
        try:
            while self._record < record - 1:
                self._advance()
        except (StopIteration, csv.Error):  # the two readers disagree: no line, still reported
            return None
        return self._line + 1

    def _advance(self) -> None:
        if self._reader is None:
            self._handle = self.path.open(newline="", encoding="utf-8", errors="replace")
            self._reader = csv.reader(self._handle)
        fields = next(self._reader)
        self._line = self._reader.line_num  # type: ignore[attr-defined]
        if fields:
            self._record += 1


def _preview(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        return next(csv.reader(handle), [])


def _exact(tables: Iterator[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Re-cut a stream of tables into tables of exactly `rows` rows (the last: fewer)."""
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        pending.append(table)
        held += table.num_rows
        while held >= rows:
            merged = pa.concat_tables(pending)
            yield merged.slice(0, rows)
            rest = merged.slice(rows)
            pending, held = [rest], rest.num_rows
    if held:
        yield pa.concat_tables(pending)


def _check_columns(path: Path, present: Sequence[str], wanted: Sequence[str]) -> None:
    missing = [name for name in wanted if name not in present]
    if missing:
        raise InputError(
            f"{path}: no column {', '.join(map(repr, missing))}; it has {', '.join(present)}"
        )


def open_source(
    path: Path,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    keep_columns: Sequence[str] = (),
    chunk_rows: int = 1024,
) -> CorpusSource:
    suffix = path.suffix.lower().lstrip(".")
    kind = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "csv": "csv"}.get(suffix)
    kind = kind or ("parquet" if suffix in ("parquet", "pq") else None)
    if kind is None:
        raise InputError(f"{path}: unknown input format; use .jsonl, .csv or .parquet")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    source = CorpusSource(path, kind, text_column, id_column, tuple(keep_columns), chunk_rows)
    source.check_columns()
    return source
