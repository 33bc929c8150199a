"""Read a corpus (JSONL, CSV or Parquet) as fixed-size chunks of rows, streaming.

Chunk k always holds rows [k * rows, (k + 1) * rows) of the input, whatever the format's
own block sizes: a resumed job finds the same chunks as the run it continues. Memory
holds one chunk (plus the reader's buffer), never the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from embellama.errors import InputError
from embellama.jsonl import json_lines

__all__ = ["Chunk", "CorpusSource", "open_source"]

FORMATS = ("jsonl", "csv", "parquet")


@dataclass(frozen=True)
class Chunk:
    """One output row group's worth of input rows."""

    number: int
    start_row: int
    texts: list[Any]  # as read: a non-string here is a bad row, reported, not embedded
    ids: list[Any]
    kept: pa.Table | None  # the columns carried through, same rows


@dataclass(frozen=True)
class CorpusSource:
    path: Path
    format: str
    text_column: str
    id_column: str | None
    keep_columns: tuple[str, ...]
    chunk_rows: int

    def total_rows(self) -> int | None:
        """Rows in the input: free for Parquet (footer), one pass over lines otherwise."""
        if self.format == "parquet":
            return int(pq.ParquetFile(self.path).metadata.num_rows)
        with self.path.open("rb") as handle:
            lines = sum(1 for line in handle if line.strip())
        return lines - 1 if self.format == "csv" else lines

    def chunks(self) -> Iterator[Chunk]:
        tables = self._jsonl_tables() if self.format == "jsonl" else self._arrow_tables()
        for number, table in enumerate(_exact(tables, self.chunk_rows)):
            yield self._chunk(number, table)

    def _columns(self) -> list[str]:
        names = [self.text_column, *self.keep_columns]
        if self.id_column is not None:
            names.append(self.id_column)
        return list(dict.fromkeys(names))

    def _chunk(self, number: int, table: pa.Table) -> Chunk:
        start = number * self.chunk_rows
        texts = table.column(self.text_column).to_pylist()
        ids = (
            table.column(self.id_column).to_pylist()
            if self.id_column is not None
            else list(range(start, start + table.num_rows))
        )
        kept = table.select(list(self.keep_columns)) if self.keep_columns else None
        return Chunk(number, start, texts, ids, kept)

    def _arrow_tables(self) -> Iterator[pa.Table]:
        columns = self._columns()
        if self.format == "parquet":
            handle = pq.ParquetFile(self.path)
            _check_columns(self.path, handle.schema_arrow.names, columns)
            for batch in handle.iter_batches(batch_size=self.chunk_rows, columns=columns):
                yield pa.Table.from_batches([batch])
            return
        reader = pa_csv.open_csv(
            self.path,
            convert_options=pa_csv.ConvertOptions(
                include_columns=columns,
                # Text stays text even when a column looks numeric; ids keep their type.
                column_types={self.text_column: pa.string()},
                strings_can_be_null=False,
            ),
        )
        _check_columns(self.path, reader.schema.names, columns)
        for batch in reader:
            yield pa.Table.from_batches([batch])

    def _jsonl_tables(self) -> Iterator[pa.Table]:
        """JSON lines: objects, or bare strings (the text). Built by hand, not by
        pyarrow's reader, so a row whose text is a number or null is a bad row of its
        own instead of a type error for the whole file."""
        rows: list[dict[str, Any]] = []
        with self.path.open(encoding="utf-8") as handle:
            for _, value in json_lines(handle, self.path):
                rows.append(value if isinstance(value, dict) else {self.text_column: value})
                if len(rows) == self.chunk_rows:
                    yield self._jsonl_table(rows)
                    rows = []
        if rows:
            yield self._jsonl_table(rows)

    def _jsonl_table(self, rows: list[dict[str, Any]]) -> pa.Table:
        # A text that is missing, null or not a string becomes null: a bad row.
        texts = [row.get(self.text_column) for row in rows]
        columns: dict[str, Any] = {
            self.text_column: pa.array(
                [t if isinstance(t, str) else None for t in texts], pa.string()
            )
        }
        for name in self._columns()[1:]:
            try:
                columns[name] = pa.array([row.get(name) for row in rows])
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise InputError(f"{self.path}: column {name!r} mixes types ({exc})") from exc
        return pa.table(columns)


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
    return CorpusSource(path, kind, text_column, id_column, tuple(keep_columns), chunk_rows)
