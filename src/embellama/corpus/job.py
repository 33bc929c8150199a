"""Embed a corpus file into Parquet: streaming, resumable, bad rows set aside.

    source chunks (sources.py) -> embed (the engine; a few chunks in flight so the
    scheduler always has the next batch) -> one Parquet part per chunk (parts.py)
    -> the output file, once every chunk is done

A row the model cannot take (no text, too long without truncation, unencodable) goes to
`<output>.errors.jsonl` with its id and reason; the job goes on, unless `strict`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embellama.config import Truncation
from embellama.corpus.parts import PartStore
from embellama.corpus.sources import Chunk, CorpusSource
from embellama.engine import EmbeddingEngine
from embellama.errors import InputError
from embellama.results import EmbeddingResult
from embellama.rows import EmbeddedRows, embed_rows
from embellama.vectors import Quantization

__all__ = [
    "CorpusOptions",
    "CorpusProgress",
    "CorpusReport",
    "EmbeddedRows",
    "embed_corpus",
    "embed_rows",
]

_log = logging.getLogger("embellama.corpus")


@dataclass(frozen=True)
class CorpusOptions:
    truncate: Truncation = Truncation.NONE
    dimensions: int | None = None
    strict: bool = False
    # Chunks being embedded at once: enough that the next batch is always queued.
    in_flight: int = 3
    # Write this integer form (vectors.py) as the `embedding` column instead of floats.
    quantize: Quantization | None = None


@dataclass
class CorpusProgress:
    """Running totals, for a progress bar or a log line."""

    rows: int = 0
    tokens: int = 0
    bad_rows: int = 0
    skipped_chunks: int = 0
    started: float = 0.0
    cache_hits: int = 0


@dataclass(frozen=True)
class CorpusReport:
    rows: int
    bad_rows: int
    tokens: int
    seconds: float
    resumed_chunks: int
    # The output was already complete for this very job: nothing was run.
    already_complete: bool = False
    # Rows whose vector came from the cache; None when the job ran without one.
    cache_hits: int | None = None


@dataclass(frozen=True)
class _Embedded:
    chunk: Chunk
    keep: list[int]  # positions in the chunk that were embedded
    result: EmbeddingResult | None
    errors: list[dict[str, Any]]


def embed_corpus(
    engine: EmbeddingEngine,
    source: CorpusSource,
    store: PartStore,
    options: CorpusOptions,
    on_progress: Callable[[CorpusProgress], None] = lambda _: None,
) -> CorpusReport:
    progress = CorpusProgress(started=time.monotonic())
    if store.complete:
        rows = pq.ParquetFile(store.output).metadata.num_rows
        return CorpusReport(rows, 0, 0, 0.0, resumed_chunks=0, already_complete=True)
    done = store.done()
    dimensions = options.dimensions or engine.model_info().dimensions
    schema = _schema(source, dimensions, options.quantize)
    chunks = 0
    with ThreadPoolExecutor(options.in_flight, thread_name_prefix="embellama-corpus") as pool:
        pending: list[Future[_Embedded]] = []
        for chunk in source.chunks():
            chunks += 1
            if chunk.number in done:
                progress.skipped_chunks += 1
                progress.rows += len(chunk.texts)
                continue
            pending.append(pool.submit(_embed_chunk, engine, chunk, options))
            if len(pending) >= options.in_flight:
                _store(pending.pop(0).result(), store, schema, progress)
                on_progress(progress)
        for future in pending:
            _store(future.result(), store, schema, progress)
            on_progress(progress)
    rows, bad = store.finish(chunks, schema)
    return CorpusReport(
        rows=rows,
        bad_rows=bad,
        tokens=progress.tokens,
        seconds=time.monotonic() - progress.started,
        resumed_chunks=progress.skipped_chunks,
        cache_hits=progress.cache_hits if engine.engine.cache is not None else None,
    )


def _embed_chunk(engine: EmbeddingEngine, chunk: Chunk, options: CorpusOptions) -> _Embedded:
    # Rows the reader refused are not embedded; the reader's reason is the one reported.
    texts = [None if p in chunk.problems else t for p, t in enumerate(chunk.texts)]
    rows = embed_rows(engine, texts, options.truncate, options.dimensions, options.quantize)
    problems = {**rows.problems, **chunk.problems}
    errors = [_error(chunk, p, problems[p], options) for p in sorted(problems)]
    errors += [_rejected(record, options) for record in chunk.rejected]
    return _Embedded(chunk, rows.keep, rows.result, errors)


def _error(chunk: Chunk, position: int, reason: str, options: CorpusOptions) -> dict[str, Any]:
    row = chunk.start_row + position
    identity = chunk.ids[position].as_py()
    line = chunk.lines[position] if chunk.lines is not None else None
    if options.strict:
        where = f" (line {line})" if line is not None else ""
        raise InputError(f"row {row} (id {identity!r}): {reason}{where}")
    error = {"row": row, "id": _jsonable(identity), "reason": reason}
    return error if line is None else {**error, "line": line}


def _rejected(record: dict[str, Any], options: CorpusOptions) -> dict[str, Any]:
    """An input record that is no row (a CSV record with too many fields)."""
    if options.strict:
        raise InputError(f"line {record['line']}: {record['reason']}")
    return {"row": None, "id": None, **record}


def _jsonable(value: object) -> object:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _store(
    embedded: _Embedded, store: PartStore, schema: pa.Schema, progress: CorpusProgress
) -> None:
    chunk, keep, result = embedded.chunk, embedded.keep, embedded.result
    tokens = list(result.token_counts) if result is not None else []
    columns: dict[str, pa.Array] = {
        "id": chunk.ids.take(pa.array(keep, pa.int64())).cast(schema.field("id").type),
        "embedding": _embedding_column(result, schema.field("embedding")),
        "tokens": pa.array(tokens, pa.int32()),
    }
    if chunk.kept is not None:
        kept = chunk.kept.take(pa.array(keep, pa.int64()))
        for name in kept.column_names:
            columns[name] = kept.column(name).combine_chunks().cast(schema.field(name).type)
    store.write(chunk.number, pa.table(columns, schema=schema), embedded.errors)
    progress.rows += len(chunk.texts)
    progress.tokens += sum(tokens)
    progress.bad_rows += len(embedded.errors)
    progress.cache_hits += result.cache_hits if result is not None else 0


def _embedding_column(result: EmbeddingResult | None, column: pa.Field) -> pa.Array:
    """The form the column's metadata names (floats when none): float32, int8 or uint8
    fixed-size lists, or fixed-size binary for ubinary's packed bits."""
    named = (column.metadata or {}).get(_FORM)
    kind = Quantization(named.decode()) if named else None
    if result is None:
        return pa.array([], column.type)
    if kind is Quantization.UBINARY:
        codes = np.ascontiguousarray(result.codes(kind))
        return pa.FixedSizeBinaryArray.from_buffers(
            column.type, len(codes), [None, pa.py_buffer(codes.tobytes())]
        )
    rows = result.codes(kind) if kind else result.vectors.astype(np.float32, copy=False)
    return pa.FixedSizeListArray.from_arrays(
        pa.array(rows.reshape(-1), column.type.value_type), column.type.list_size
    )


# The `embedding` field's metadata key naming its integer form (vectors.Quantization).
_FORM = b"embellama.quantization"


def _embedding_field(dimensions: int, quantize: Quantization | None) -> pa.Field:
    if quantize is None:
        return pa.field("embedding", pa.list_(pa.float32(), dimensions))
    width = quantize.bytes_per_vector(dimensions)
    if quantize is Quantization.UBINARY:
        kind = pa.binary(width)  # fixed-size: the packed bits as raw bytes
    else:
        signed = quantize in (Quantization.INT8, Quantization.BINARY)
        kind = pa.list_(pa.int8() if signed else pa.uint8(), width)
    return pa.field("embedding", kind, metadata={_FORM: quantize.value.encode()})


def _schema(
    source: CorpusSource, dimensions: int, quantize: Quantization | None = None
) -> pa.Schema:
    """The output's columns; the id and kept columns take their type from the input."""
    first = next(source.chunks(), None)
    id_type = pa.int64()
    kept: list[pa.Field] = []
    if first is not None:
        if source.id_column is not None:
            id_type = first.ids.type
            if pa.types.is_null(id_type):  # no id in the first rows: strings are likeliest
                id_type = pa.string()
        if first.kept is not None:
            kept = list(first.kept.schema)
    return pa.schema(
        [
            pa.field("id", id_type),
            _embedding_field(dimensions, quantize),
            pa.field("tokens", pa.int32()),
            *kept,
        ]
    )
