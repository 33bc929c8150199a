"""`embellama embed`: vectors for texts on the command line or a corpus file.

`--output FILE.parquet`: a corpus job (embellama.corpus). Input JSONL, CSV or Parquet,
streamed; output columns id, embedding (fixed_size_list<float32>[dim]), tokens and any
`--keep-columns`; bad rows to FILE.errors.jsonl; an interrupted run started again with
the same command resumes. `--ray` runs the same job on Ray Data (embellama.corpus.ray).

Otherwise JSONL out (stdout or `--output FILE.jsonl`, embellama.cli.jsonl_job): input
texts as arguments or a JSONL file of strings or objects with `--text-column` (and
`--id-column`, else "id" when present); one JSON object per row with index, id, token
count and embedding; bad rows set aside as the Parquet job does, `--strict` too. With
`--cache-url` (Redis) a re-run reads its vectors back instead of computing them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from embellama.cli.jsonl_job import SAMPLE_LINES, Record, embed_records, read_jsonl, summary
from embellama.cli.options import (
    CACHE_OPTIONS,
    MODEL_OPTIONS,
    add_options,
    cache_from,
    model_config_from,
    resolve,
)
from embellama.config import EngineConfig, ModelConfig, ServiceLimits, Truncation
from embellama.engine import EmbeddingEngine
from embellama.errors import ConfigError, InputError
from embellama.jsonl import check_jsonl_columns
from embellama.rows import plural
from embellama.vectors import Quantization

if TYPE_CHECKING:
    from embellama.corpus import CorpusOptions, CorpusProgress, CorpusReport, CorpusSource


def register(commands: Any) -> None:
    parser = commands.add_parser("embed", help="Embed texts given as arguments or in a JSONL file.")
    parser.add_argument("texts", nargs="*", help="Texts to embed.")
    parser.add_argument(
        "--input", type=Path, help="JSONL, CSV or Parquet file of texts ('-': JSONL on stdin)."
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="FILE.parquet: a resumable corpus job; FILE.jsonl (or stdout): JSON lines.",
    )
    corpus = parser.add_argument_group(
        "corpus jobs (--output FILE.parquet; --text-column, --id-column and --strict also "
        "for JSONL)"
    )
    corpus.add_argument("--text-column", default="text", help="Column with the text.")
    corpus.add_argument("--id-column", help="Column copied to `id` (default: the row number).")
    corpus.add_argument(
        "--keep-columns",
        type=lambda text: [c for c in text.split(",") if c],
        default=[],
        help="Comma-separated input columns to carry into the output.",
    )
    corpus.add_argument(
        "--row-group-size",
        type=_at_least(1),
        default=1024,
        help="Rows per output row group, and per checkpoint of a resumable run.",
    )
    corpus.add_argument(
        "--workers",
        type=_at_least(0),
        default=None,
        help="Worker processes to decode in, 0 for a thread of this process. Default: one "
        "per core (at most 4), each with 1 thread: on 2 cores 2 workers x 1 thread beat "
        "1 x 2 threads by 7 %% (bench/corpus_job.md).",
    )
    corpus.add_argument(
        "--strict", action="store_true", help="Fail on the first bad row instead of listing it."
    )
    corpus.add_argument(
        "--overwrite", action="store_true", help="Replace the output and any unfinished parts."
    )
    corpus.add_argument(
        "--quantize",
        choices=["int8", "uint8", "binary", "ubinary"],
        default=None,
        help="Write the `embedding` column as this integer form instead of float32: int8 or "
        "uint8 lists (per-dimension ranges calibrated on --calibration-file or the built-in "
        "set: 4x smaller), int8 lists of packed sign bits (binary) or fixed-size binary "
        "(ubinary): 32x smaller. The form is named in the field's metadata.",
    )
    corpus.add_argument("--ray", action="store_true", help="Run the job on Ray Data.")
    corpus.add_argument("--ray-address", help="A Ray cluster to join (default: start a local one).")
    corpus.add_argument(
        "--ray-actors",
        type=_at_least(1),
        default=1,
        help="Ray actors, each with its own model copy.",
    )
    parser.add_argument(
        "--dimensions",
        type=int,
        default=None,
        help="Keep the first N dimensions (Matryoshka), renormalized.",
    )
    parser.add_argument(
        "--truncate",
        choices=[t.value for t in Truncation],
        default="none",
        help="Cut inputs longer than the context at the end or start (default: fail).",
    )
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    add_options(parser, MODEL_OPTIONS, "model")
    add_options(
        parser,
        CACHE_OPTIONS,
        "cache (off unless --cache-size or --cache-url is given)",
        {"cache-size": "0 (off); 256MB in front of --cache-url"},
    )
    parser.set_defaults(handler=run)


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum`, else a one-line error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def run(args: argparse.Namespace) -> int:
    if bool(args.texts) == bool(args.input):
        raise InputError("give texts as arguments or --input FILE, not both and not neither")
    if args.output is not None and args.output.suffix.lower() == ".parquet":
        if args.input is None or str(args.input) == "-":
            raise InputError("a Parquet output needs --input FILE (JSONL, CSV or Parquet)")
        return _corpus_job(args)
    if args.input is not None and args.input.suffix.lower() in (".csv", ".parquet"):
        raise InputError(f"{args.input}: CSV and Parquet inputs write --output FILE.parquet")
    for flag in ("keep_columns", "ray", "quantize"):
        if getattr(args, flag):
            raise InputError(f"--{flag.replace('_', '-')} needs --output FILE.parquet")
    return _jsonl_job(args)


def _jsonl_job(args: argparse.Namespace) -> int:
    from_file = args.input is not None and str(args.input) != "-"
    if from_file:
        wanted = [args.text_column, *([args.id_column] if args.id_column else [])]
        check_jsonl_columns(args.input, wanted, args.text_column, SAMPLE_LINES)
    records = (
        read_jsonl(args.input, args.text_column, args.id_column)
        if args.input
        else iter([Record(row, None, text) for row, text in enumerate(args.texts)])
    )
    total = _count_lines(args.input) if from_file else None
    cache_values = resolve(args, CACHE_OPTIONS)
    if args.cache_size is None and not cache_values["cache_url"]:
        cache_values["cache_size"] = 0  # the server caches by default; a one-off job does not
    config = EngineConfig(models=(model_config_from(resolve(args, MODEL_OPTIONS)),))
    show = not args.no_progress and (args.output is not None) and sys.stderr.isatty()
    with (
        EmbeddingEngine(config, cache=cache_from(cache_values)) as engine,
        tqdm(total=total, unit="text", disable=not show, file=sys.stderr) as bar,
    ):
        totals = embed_records(
            engine,
            records,
            args.output,
            truncate=Truncation(args.truncate),
            dimensions=args.dimensions,
            strict=args.strict,
            bar=bar,
        )
    if config.models[0].version is not None:  # quiet otherwise: stdout may be the vectors
        print(_served_by(config.models[0]), file=sys.stderr)
    if totals.bad_rows:
        print(summary(totals, args.output), file=sys.stderr)
    if engine.engine.cache is not None:
        inputs = totals.rows
        print(f"embellama: cache: {totals.cache_hits} hits of {inputs} inputs", file=sys.stderr)
    return 0


def _served_by(model: ModelConfig) -> str:
    """Which model and version made the vectors: rows of two versions never compare."""
    return f"embellama: embedded by {model.resolved_name} (version {model.served_version})"


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _corpus_job(args: argparse.Namespace) -> int:
    try:
        from embellama.corpus import CorpusOptions, errors_path, open_source
    except ImportError as exc:  # pyarrow is the `corpus` extra
        raise ConfigError(
            f"Parquet corpus jobs need pyarrow ({exc}): pip install 'embellama[corpus]'"
        ) from None
    source = open_source(
        args.input,
        text_column=args.text_column,
        id_column=args.id_column,
        keep_columns=args.keep_columns,
        chunk_rows=args.row_group_size,
    )
    if args.workers is None:
        args.workers = min(os.cpu_count() or 1, 4)
    model = model_config_from(resolve(args, MODEL_OPTIONS), workers=max(args.workers, 1))
    quantize = Quantization(args.quantize) if args.quantize else None
    if quantize is not None and args.ray:
        raise InputError("--quantize is not available with --ray yet; run the job locally")
    options = CorpusOptions(
        Truncation(args.truncate), args.dimensions, args.strict, quantize=quantize
    )
    try:
        if args.ray:
            from embellama.corpus.ray import embed_file

            report = embed_file(
                source,
                args.output,
                model,
                options,
                args.ray_actors,
                args.ray_address,
                overwrite=args.overwrite,
            )
        else:
            report = _local_job(args, source, model, options)
    except KeyboardInterrupt:  # Ctrl-C: a stop the user asked for, not a crash
        parts = args.output.with_name(args.output.name + ".parts")
        kept = f"finished row groups are kept in {parts}; " if parts.is_dir() else ""
        print(
            f"embellama: interrupted; {kept}run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    if report.already_complete:
        print(f"embellama: {args.output} is already complete for this job", file=sys.stderr)
        return 0
    print(_served_by(model), file=sys.stderr)
    print(
        f"embellama: {plural(report.rows, 'row')} embedded in {report.seconds:.1f} s "
        f"({report.rows / max(report.seconds, 1e-9):.0f} rows/s), "
        f"{plural(report.bad_rows, 'bad row')}"
        + (f" listed in {errors_path(args.output)}" if report.bad_rows else "")
        + (
            f"; resumed after {report.resumed_chunks} finished row groups"
            if report.resumed_chunks
            else ""
        ),
        file=sys.stderr,
    )
    if report.cache_hits is not None:
        print(
            f"embellama: cache: {report.cache_hits} hits of {report.rows} inputs",
            file=sys.stderr,
        )
    return 0


def _local_job(
    args: argparse.Namespace, source: CorpusSource, model: ModelConfig, options: CorpusOptions
) -> CorpusReport:
    from embellama.corpus import PartStore, embed_corpus, job_manifest

    job = job_manifest(
        args.input,
        model,
        text_column=source.text_column,
        id_column=source.id_column,
        keep_columns=list(source.keep_columns),
        row_group_size=source.chunk_rows,
        truncate=options.truncate.value,
        dimensions=options.dimensions,
        quantize=options.quantize,
    )
    store = PartStore(args.output, job, overwrite=args.overwrite)
    cache_values = resolve(args, CACHE_OPTIONS)
    if args.cache_size is None and not cache_values["cache_url"]:
        cache_values["cache_size"] = 0
    limits = ServiceLimits(workers=args.workers)
    config = EngineConfig(models=(model,))
    total = source.total_rows()
    show = not args.no_progress and sys.stderr.isatty()
    try:
        with (
            EmbeddingEngine(config, cache=cache_from(cache_values), limits=limits) as engine,
            tqdm(total=total, unit="row", disable=not show, file=sys.stderr) as bar,
        ):
            reporter = _Reporter(bar, total, show)
            return embed_corpus(engine, source, store, options, reporter)
    except KeyboardInterrupt:
        raise  # the parts are what the next run resumes from
    except Exception as exc:
        store.abandon(exc)
        raise


class _Reporter:
    """A progress bar on a terminal; elsewhere a log line every `every` seconds."""

    def __init__(self, bar: tqdm, total: int | None, show: bool, every: float = 10.0) -> None:
        self.bar, self.total, self.show, self.every = bar, total, show, every
        self.last = time.monotonic()

    def __call__(self, progress: CorpusProgress) -> None:
        elapsed = max(time.monotonic() - progress.started, 1e-9)
        rows_per_s, tokens_per_s = progress.rows / elapsed, progress.tokens / elapsed
        if self.show:
            self.bar.n = progress.rows
            self.bar.set_postfix(tokens_per_s=f"{tokens_per_s:.0f}", bad=progress.bad_rows)
            return
        if time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        eta = ""
        if self.total and rows_per_s > 0:
            eta = f", ETA {max(self.total - progress.rows, 0) / rows_per_s:.0f} s"
        print(
            f"embellama: {progress.rows}/{self.total or '?'} rows, {rows_per_s:.0f} rows/s, "
            f"{tokens_per_s:.0f} tokens/s, {progress.bad_rows} bad{eta}",
            file=sys.stderr,
            flush=True,
        )
