"""Corpus jobs on Ray Data: the same embeddings as `embellama embed`, past one machine.

    ds = ray.data.read_parquet("s3://bucket/docs/")
    ds = embed_dataset(ds, model="/models/bge-small.gguf", concurrency=4, threads_per_actor=8)
    ds.write_parquet("s3://bucket/vectors/")

The job is `map_batches(EmbedActor, concurrency=N, num_cpus=threads)`: each actor loads
the GGUF once (the file must be readable at the same path on every node) and embeds
batches with the same engine as the library, so vectors equal a local run's within the
batch-invariance bound. Ray retries failed tasks; a rerun of a killed driver starts over
(the local job is the one that resumes). `pip install 'embellama[ray]'`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embellama.config import EngineConfig, ModelConfig, Truncation
from embellama.corpus.job import embed_rows
from embellama.engine import EmbeddingEngine
from embellama.errors import ConfigError, InputError

if TYPE_CHECKING:
    import ray.data

    from embellama.corpus import CorpusOptions, CorpusReport, CorpusSource

__all__ = ["EmbedActor", "embed_dataset", "embed_file"]

ERROR_COLUMN = "embellama_error"
_log = logging.getLogger("embellama.ray")


class EmbedActor:
    """One model copy in one Ray actor; called with pyarrow batches."""

    def __init__(
        self,
        model: ModelConfig,
        text_column: str,
        truncate: str,
        dimensions: int | None,
    ) -> None:
        self.engine = EmbeddingEngine(EngineConfig(models=(model,)))
        self.text_column = text_column
        self.truncate = Truncation(truncate)
        self.dimensions = dimensions
        self.width = dimensions or self.engine.model_info().dimensions

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Adds `embedding` and `tokens`; a row that cannot be embedded gets nulls and
        its reason in `embellama_error` instead of failing the whole job."""
        texts = batch.column(self.text_column).to_pylist()
        rows = embed_rows(self.engine, texts, self.truncate, self.dimensions)
        vectors = np.zeros((len(texts), self.width), np.float32)
        tokens: list[int | None] = [None] * len(texts)
        if rows.result is not None:
            vectors[rows.keep] = rows.result.vectors
            for position, count in zip(rows.keep, rows.result.token_counts, strict=True):
                tokens[position] = count
        errors = [rows.problems.get(position) for position in range(len(texts))]
        good = pa.array([e is None for e in errors])
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), self.width)
        return (
            batch.append_column("embedding", pc.if_else(good, embedding, None))
            .append_column("tokens", pa.array(tokens, pa.int32()))
            .append_column(ERROR_COLUMN, pa.array(errors, pa.string()))
        )


def embed_dataset(
    ds: ray.data.Dataset,
    model: str | Path | ModelConfig,
    *,
    text_column: str = "text",
    concurrency: int = 1,
    threads_per_actor: int | None = None,
    batch_size: int = 512,
    truncate: Truncation | str = Truncation.NONE,
    dimensions: int | None = None,
) -> ray.data.Dataset:
    """`ds` with `embedding` (fixed_size_list<float32>), `tokens` and `embellama_error`
    (null, or why the row has no embedding) added to each row. Each actor reserves
    `threads_per_actor` CPUs, the llama.cpp threads it runs."""
    import ray.data

    if not isinstance(model, ModelConfig):
        model = ModelConfig(path=Path(model))
    threads = threads_per_actor or model.n_threads or max(1, (os.cpu_count() or 1) // concurrency)
    config = ModelConfig(**{**vars(model), "n_threads": threads})
    reserved = actor_cpus(concurrency, threads, _cluster_cpus())
    return ds.map_batches(
        EmbedActor,
        fn_constructor_kwargs={
            "model": config,
            "text_column": text_column,
            "truncate": Truncation.parse(truncate).value,
            "dimensions": dimensions,
        },
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=reserved,
    )


def actor_cpus(concurrency: int, threads: int, cluster_cpus: float) -> float:
    """The CPUs each actor reserves: its `threads`, or its share of what the cluster
    has once one CPU is left for the read and write tasks. Actors that reserve every
    CPU leave none to read with, and Ray waits forever ("3/2 CPU") without an error.
    A cluster of one CPU (or none) cannot run both: that is an error, with the sums."""
    wanted = concurrency * threads
    room = cluster_cpus - 1
    if wanted <= room:
        return float(threads)
    if room <= 0:
        raise ConfigError(
            f"{concurrency} actors x {threads} threads plus 1 CPU to read with need "
            f"{wanted + 1} CPUs; the Ray cluster has {cluster_cpus:g}, and at least 2 are "
            "needed: start Ray with more CPUs (ray.init(num_cpus=2)) or join a larger one"
        )
    share = room / concurrency
    _log.warning(
        "%d actors x %d threads plus 1 CPU to read with need %d CPUs; the Ray cluster has "
        "%g: each actor reserves %.2f CPUs and still runs %d threads",
        concurrency,
        threads,
        wanted + 1,
        cluster_cpus,
        share,
        threads,
    )
    return share


def _cluster_cpus() -> float:
    """The CPUs of the cluster this job runs on (Ray Data would start a local one on
    first use; here it is started now, to size the actors)."""
    import ray

    if not ray.is_initialized():
        ray.init()
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return float(resources.get("CPU", 0))


def embed_file(
    source: CorpusSource,
    output: Path,
    model: ModelConfig,
    options: CorpusOptions,
    actors: int = 1,
    address: str | None = None,
    overwrite: bool = False,
) -> CorpusReport:
    """`embellama embed --ray`: read the file with Ray Data, embed, write a Parquet
    dataset (a directory) with the local job's columns, and bad rows to the errors file."""
    import time

    import ray
    import ray.data

    from embellama.corpus import CorpusReport, errors_path

    if source.id_column is None:
        raise InputError("--ray needs --id-column: Ray Data has no stable row numbers")
    if options.strict:
        raise InputError("--strict is not supported with --ray")
    if output.exists():
        if not overwrite:
            raise ConfigError(f"{output} exists; pass --overwrite to replace it")
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    started = time.monotonic()
    threads = model.n_threads or max(1, (os.cpu_count() or 1) // actors)
    # A local cluster gets one logical CPU more than the actors reserve, for the read
    # and write tasks: with exactly the actors' CPUs, reading waits forever on them.
    # The job's own summary is what a user reads: Ray's INFO lines stay in its session
    # logs, its warnings and errors still show.
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(
            num_cpus=actors * threads + 1, include_dashboard=False, logging_level=logging.WARNING
        )
    _quiet_ray_data()
    try:
        read = {
            "parquet": ray.data.read_parquet,
            "csv": ray.data.read_csv,
            "jsonl": ray.data.read_json,
        }[source.format]
        columns = list(dict.fromkeys([source.id_column, source.text_column, *source.keep_columns]))
        ds = read(str(source.path)).select_columns(columns)
        embedded = embed_dataset(
            ds,
            model,
            text_column=source.text_column,
            concurrency=actors,
            threads_per_actor=threads,
            batch_size=source.chunk_rows,
            truncate=options.truncate,
            dimensions=options.dimensions,
        ).materialize()
        rows = embedded.map_batches(_rows_without_error, batch_format="pyarrow")
        bad = embedded.select_columns([source.id_column, ERROR_COLUMN]).map_batches(
            _rows_with_error, batch_format="pyarrow"
        )
        keep = ["id", "embedding", "tokens", *source.keep_columns]
        rows = rows.rename_columns({source.id_column: "id"}).select_columns(keep)
        rows.write_parquet(str(output))
        reasons = {row[source.id_column]: row[ERROR_COLUMN] for row in bad.iter_rows()}
        errors = _located(source, reasons)
        if errors:
            errors_path(output).write_text(
                "".join(json.dumps(e, default=str, ensure_ascii=False) + "\n" for e in errors)
            )
        count = rows.count()
        tokens = int(rows.sum("tokens") or 0) if count else 0
    finally:
        ray.shutdown()
    return CorpusReport(count, len(errors), tokens, time.monotonic() - started, 0)


def _rows_without_error(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.is_null(batch.column(ERROR_COLUMN)))


def _rows_with_error(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.is_valid(batch.column(ERROR_COLUMN)))


def _located(source: CorpusSource, reasons: dict[object, str]) -> list[dict[str, object]]:
    """The bad rows as the local job lists them, with their row (and line) found by id in
    one pass over the input file: Ray Data keeps no row numbers. Only run when a row is
    bad; in file order."""
    if not reasons:
        return []
    errors: list[dict[str, object]] = []
    for chunk in source.chunks():
        for position, identity in enumerate(chunk.ids.to_pylist()):
            if identity not in reasons:
                continue
            error: dict[str, object] = {
                "row": chunk.start_row + position,
                "id": identity,
                "reason": reasons.pop(identity),
            }
            if chunk.lines is not None:
                error["line"] = chunk.lines[position]
            errors.append(error)
    # An id the pass did not find again (a null id, say): still listed, without a row.
    errors += [{"row": None, "id": identity, "reason": r} for identity, r in reasons.items()]
    return errors


def _quiet_ray_data() -> None:
    """Ray Data prints every execution plan and a progress line per operator at INFO;
    its session log keeps them. The console shows its warnings and errors only."""
    import ray.data

    ray.data.DataContext.get_current().print_on_execution_start = False
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):  # the console, not the session file
            handler.setLevel(logging.WARNING)
