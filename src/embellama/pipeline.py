"""The one embedding pipeline of a served model, for the library and the server alike.

    parse (inputs.py) -> prefix (prompts.py) -> validate and tokenize -> cache (cache/)
    -> schedule (batching/) -> decode and pool (backends/) -> normalize and cut (vectors.py)
    -> quantize (vectors.py; int8/uint8 ranges calibrated once per model) -> EmbeddingResult

A new stage (prefixes, chunking) goes in `ServedModel.embed`, once. The cache holds
pooled vectors, before normalization and `dimensions`, so one entry serves every
request shape. This module knows nothing about HTTP, nor how or where decodes run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import numpy as np

from embellama.backends.base import Backend, WorkerStatus
from embellama.backends.factory import BackendFactory, default_backends
from embellama.batching.scheduler import Scheduled, Scheduler
from embellama.cache import EmbeddingCache, ModelTag
from embellama.calibration import CalibrationSet, calibration_set
from embellama.config import (
    ModelConfig,
    ModelKind,
    Normalization,
    Pooling,
    ServiceLimits,
    Truncation,
)
from embellama.default_model import engine_cache_directory
from embellama.errors import (
    ConfigError,
    InputError,
    ModelFileError,
    ModelUnloadingError,
    NoWorkerError,
    PoisonInputError,
    RequestTimeoutError,
    ServiceError,
    WrongModelKindError,
)
from embellama.inputs import InputItem, TokenArray
from embellama.model.fingerprint import gguf_fingerprint
from embellama.model.gguf import read_gguf_info
from embellama.model.loaded import LoadedModel, ModelInfo
from embellama.model.memory import fit_context, format_bytes
from embellama.model.native import TokenIds
from embellama.model.tokenizer import Chunking, TokenizedInput, TokenSpans
from embellama.options import EmbedOptions, RerankOptions
from embellama.prompts import Prompts, resolve_prompts
from embellama.results import EmbeddingResult, RerankHit, RerankResult, Timings
from embellama.stages import StageLog, current
from embellama.vectors import (
    Codes,
    Matrix,
    Quantization,
    Ranges,
    check_dimensions,
    finish,
    quantize,
    resolve_normalization,
)

__all__ = ["FileStamp", "ModelStats", "ServedModel"]

T = TypeVar("T")
P = ParamSpec("P")
_log = logging.getLogger("embellama.pipeline")

# Tokenizing more than this many characters (or token ids) moves off the event loop:
# measured ~1 ms per 10 kB of text, so the loop never stalls for more than a few ms.
OFF_LOOP_TOKENIZE_SIZE = 32 * 1024


@dataclass(frozen=True)
class ModelStats:
    """One served model's state at a moment: what /ready, /info and /metrics show."""

    name: str
    ready: bool
    queued_requests: int
    queued_tokens: int
    # Requests refused because an input had crashed a worker twice before.
    poison_refused: int
    workers_alive: int
    # Why no worker serves, when none does.
    reason: str | None
    workers: list[WorkerStatus]


@dataclass(frozen=True)
class FileStamp:
    """What a reload compares to decide a model file is unchanged: size and mtime, and
    the content fingerprint, which a copy keeping both (`cp -p`, a same-size fine-tune)
    still changes."""

    size: int
    mtime_ns: int
    fingerprint: str

    @classmethod
    def of(cls, config: ModelConfig) -> FileStamp:
        """Reads the header and ~12 KiB per tensor (milliseconds): call it off the loop."""
        info = read_gguf_info(config.path)
        stat = os.stat(config.path)
        return cls(stat.st_size, stat.st_mtime_ns, gguf_fingerprint(info))


def _within_request_timeout(
    method: Callable[Concatenate[ServedModel, P], Awaitable[T]],
) -> Callable[Concatenate[ServedModel, P], Coroutine[Any, Any, T]]:
    """Bound the whole call by `request_timeout`: tokenizing, cache and single-flight
    waits, every scheduler wait. Per wait, a request that waited on another's result and
    then had to compute it itself took up to twice the timeout."""

    @functools.wraps(method)
    async def bounded(self: ServedModel, /, *args: P.args, **kwargs: P.kwargs) -> T:
        timeout = self.limits.request_timeout
        if timeout is None:
            return _noting_return(await method(self, *args, **kwargs))
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return _noting_return(await method(self, *args, **kwargs))
        except TimeoutError:
            if not scope.expired():
                raise
            raise RequestTimeoutError(f"the request did not finish within {timeout:g} s") from None

    return bounded


def _noting_return(result: T) -> T:
    """Mark when the pipeline handed its result back: what follows is the caller's
    encoding (a traced request's `encode` stage)."""
    log = current()
    if log is not None:
        log.finished = time.perf_counter()
    return result


class ServedModel:
    """One model: its tokenizer here, its decodes in a backend, its own scheduler.

    Construction loads the file (blocking: call it off the event loop); `start` and
    every other coroutine must run on the loop that will serve it.
    """

    def __init__(
        self,
        config: ModelConfig,
        limits: ServiceLimits,
        cache: EmbeddingCache | None = None,
        *,
        backends: BackendFactory = default_backends,
    ) -> None:
        """`backends` chooses where decodes run (default: by `limits.workers`)."""
        self.config = config
        self.limits = limits
        self.cache = cache
        in_process = backends.decodes_here(limits)
        self._decodes_here = in_process
        workers = max(1, limits.workers)
        fitted = fit_context(config, read_gguf_info(config.path), workers, limits.memory_limit)
        # What is loaded: `config`, with a default context lowered to fit the machine.
        self.loaded_config = fitted.config
        # A backend that decodes elsewhere (worker processes) holds the weights; this
        # process then needs only the vocabulary.
        self.model = LoadedModel(
            fitted.config, inference=in_process, engine_cache=engine_cache_directory()
        )
        _log.info(
            "model %r: %d-token context; %d worker%s x %s%s",
            self.model.name,
            self.model.limit,
            workers,
            "s" if workers > 1 else "",
            self.model.memory.describe(),
            f"; {format_bytes(fitted.available)} available" if fitted.available else "",
        )
        if not self.model.verified:
            _log.warning(
                "serving %r: architecture %r is not verified against its reference "
                "implementation (allowed by --allow-unverified-architecture); check its "
                "vectors before relying on them",
                self.model.name,
                self.model.header.architecture,
            )
        stat = os.stat(config.path)
        self.stamp = FileStamp(stat.st_size, stat.st_mtime_ns, self.model.fingerprint)
        self.cache_tag = ModelTag.of(
            self.model.fingerprint,
            self.pooling.value,
            cache_version=config.cache_version,
            version=config.version,
            engine=self.model.engine.value,
        )
        self.backend: Backend = backends.build(self.model, fitted.config, limits)
        self.scheduler = Scheduler(config.batching, limits.queue())
        self.prompts: Prompts | None = resolve_prompts(
            self.model.header.metadata,
            query_prefix=config.query_prefix,
            document_prefix=config.document_prefix,
            instruction_template=config.instruction_template,
        )
        # int8/uint8 ranges: the calibration texts are read now (a bad file fails the
        # load) and embedded on first use, once; ranges per output shape are derived
        # from those pooled vectors in microseconds.
        self.calibration: CalibrationSet = calibration_set(config.calibration_file)
        self._calibrating: asyncio.Task[Matrix] | None = None
        self._ranges: dict[tuple[Normalization, int | None], Ranges] = {}

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def aliases(self) -> tuple[str, ...]:
        return self.config.aliases

    @property
    def version(self) -> str:
        """Which version of its name this is ("1" for a model with only one)."""
        return self.config.served_version

    @property
    def pooling(self) -> Pooling:
        return self.model.pooling

    @property
    def kind(self) -> ModelKind:
        return self.model.kind

    def require(self, kind: ModelKind) -> None:
        """Refuse a call the model cannot answer, naming what the model is."""
        if self.kind is kind:
            return
        if self.kind is ModelKind.RERANK:
            raise WrongModelKindError(
                f"model {self.name!r} is a reranker (cross-encoder): it scores query-document "
                "pairs at /v1/rerank and does not embed texts"
            )
        raise WrongModelKindError(
            f"model {self.name!r} is an embedding model: it has no classifier head to score "
            "pairs; rerank with a cross-encoder model"
        )

    def info(self, *, with_sha256: bool = False) -> ModelInfo:
        return self.model.info(with_sha256=with_sha256)

    @property
    def ready(self) -> bool:
        return self.backend.alive_count > 0 and not self.scheduler.overloaded

    def workers(self) -> list[WorkerStatus]:
        return self.backend.status()

    def stats(self) -> ModelStats:
        return ModelStats(
            name=self.name,
            ready=self.ready,
            queued_requests=self.scheduler.queued_requests,
            queued_tokens=self.scheduler.queued_tokens,
            poison_refused=self.scheduler.poison.refused,
            workers_alive=self.backend.alive_count,
            reason=self.backend.reason,
            workers=self.backend.status(),
        )

    def observe_batches(self, observer: Callable[[list[int]], None]) -> None:
        """Call `observer` with the token counts of every batch this model decodes."""
        self.scheduler.batch_observer = observer

    def close_queue(self, error: Callable[[], ServiceError]) -> None:
        """Fail queued and running work with `error()` and refuse new work until
        `reopen_queue` (a drain that timed out)."""
        self.scheduler.close(error)

    def reopen_queue(self) -> None:
        self.scheduler.reopen()

    async def start(self) -> None:
        if not self._decodes_here:  # worker processes: one graph build, not one each
            try:
                await asyncio.to_thread(self.model.prepare_engine, engine_cache_directory())
            except ModelFileError as exc:  # what each worker would fail on too, said once
                raise NoWorkerError(
                    f"no worker for model {self.name!r} could start: {exc}; estimated "
                    f"{self.model.memory.describe()}"
                ) from None
        await self.backend.start(self.scheduler.feed)
        if self.backend.alive_count == 0:
            failure = self.backend.start_failure
            raise NoWorkerError(
                f"no worker for model {self.name!r} could start"
                + (f": {failure}; estimated {self.model.memory.describe()}" if failure else "")
            )

    async def stop(self, error: Callable[[], ServiceError] | None = None) -> None:
        """Fail what is still queued or running with `error()` (default: the model is
        unloading), stop the backend, and free the model once no call holds a lease."""
        self.scheduler.close(error or (lambda: ModelUnloadingError(self.name)))
        await self.backend.stop()
        await asyncio.to_thread(self.model.close)

    # -- the pipeline -----------------------------------------------------------------

    @_within_request_timeout
    async def embed(self, items: list[InputItem], options: EmbedOptions) -> EmbeddingResult:
        return await self._embed(items, options)

    async def _embed(self, items: list[InputItem], options: EmbedOptions) -> EmbeddingResult:
        self.require(ModelKind.EMBEDDING)
        if self.pooling is Pooling.NONE:
            raise ConfigError(
                f"model {self.name!r} is configured with pooling 'none'; use embed_per_token"
            )
        started = time.perf_counter()
        check_dimensions(options.dimensions, self.model.dimensions)
        prefix = self.prefix_for(options)
        chunking = Chunking(options.chunk_overlap, self.limits.max_chunks_per_input)
        prepared = await self.tokenize(items, options.truncate, prefix or "", chunking)
        tokenized = time.perf_counter()
        # What is decoded: one sequence per input, or its windows (truncate="chunk").
        sequences: list[TokenIds] = []
        owners: list[int] = []  # the input each sequence belongs to
        for index, item in enumerate(prepared):
            windows = item.windows or (item.ids,)
            sequences.extend(windows)
            owners.extend([index] * len(windows))
        timings: list[Scheduled] = []
        log = current()
        computing: list[float] = []  # when the cache asked for its misses (traced only)

        async def compute(positions: list[int]) -> list[Matrix]:
            if log is not None:
                computing.append(time.perf_counter())
            subset = [sequences[i] for i in positions]
            scheduled = await self._schedule(subset, self.pooling, [owners[i] for i in positions])
            timings.append(scheduled)
            return scheduled.outputs

        hits: list[bool] | None = None
        if self.cache is not None and options.use_cache:
            keys = [self.cache_tag.key(ids) for ids in sequences]
            looked_up = time.perf_counter()
            lookup = await self.cache.resolve(keys, self.model.dimensions, compute)
            outputs, hits = lookup.vectors, lookup.hit
            if log is not None:  # the lookup: until the misses went to be computed
                end = computing[0] if computing else time.perf_counter()
                log.add("cache", looked_up, end, cache_keys=len(keys), cache_hits=sum(hits))
        else:
            outputs = await compute(list(range(len(sequences))))
        finished = time.perf_counter()
        pooled = _combine_windows(outputs, sequences, owners, len(prepared))
        cached = (False,) * len(prepared)  # no cache consulted: no input was a hit
        if hits is not None:  # an input is a hit when all its windows are
            all_hit = [True] * len(prepared)
            for hit, owner in zip(hits, owners, strict=True):
                all_hit[owner] = all_hit[owner] and hit
            cached = tuple(all_hit)
        method = resolve_normalization(self.config.normalization, options.normalize)
        vectors = finish(pooled, method, self.config.norm_p, options.dimensions)
        quantized = await self._quantize(vectors, options)
        return EmbeddingResult(
            model=self.name,
            vectors=vectors,
            token_counts=tuple(len(item.ids) for item in prepared),
            truncated=tuple(item.truncated for item in prepared),
            timings=Timings(
                tokenize=tokenized - started,
                queue=sum(t.queue_seconds for t in timings),
                inference=sum(t.inference_seconds for t in timings),
                postprocess=time.perf_counter() - finished,
            ),
            cached=cached,
            prefix=prefix,
            quantized=quantized,
        )

    async def _quantize(self, vectors: Matrix, options: EmbedOptions) -> dict[Quantization, Codes]:
        """The asked integer forms of the finished vectors, cache hits included: the
        ranges depend on the model and the output shape, never on the request."""
        codes: dict[Quantization, Codes] = {}
        for kind in options.quantize:
            ranges = (
                await self.ranges(options.normalize, options.dimensions) if kind.scalar else None
            )
            codes[kind] = quantize(vectors, kind, ranges)
        return codes

    async def ranges(self, normalize: bool | None = None, dimensions: int | None = None) -> Ranges:
        """The int8/uint8 ranges of vectors finished with these options: the calibration
        vectors finished the same way (normalized, cut, renormalized), min and max."""
        method = resolve_normalization(self.config.normalization, normalize)
        found = self._ranges.get((method, dimensions))
        if found is None:
            pooled = await self._calibration_vectors()
            finished = finish(pooled, method, self.config.norm_p, dimensions)
            found = self._ranges[(method, dimensions)] = Ranges.of(finished)
        return found

    async def calibrate(self) -> Ranges | None:
        """The default output shape's ranges, calibrating now if need be; None for a
        model that has none (a reranker, per-token pooling) or no live worker to run it."""
        if self.kind is not ModelKind.EMBEDDING or self.pooling is Pooling.NONE:
            return None
        if self.backend.alive_count == 0:
            return self.known_ranges()
        return await self.ranges()

    def known_ranges(self) -> Ranges | None:
        """The default output shape's ranges, if calibration has run (for model cards)."""
        method = resolve_normalization(self.config.normalization, None)
        return self._ranges.get((method, None))

    async def _calibration_vectors(self) -> Matrix:
        """The calibration texts' pooled vectors, embedded once through this pipeline.

        One task for every caller (single-flight), shielded: a caller that times out or
        leaves does not cancel it, so a slow first calibration still finishes for the
        next caller; a failed one (a worker crash, an unload) is retried by the next."""
        task = self._calibrating
        if task is None or (task.done() and (task.cancelled() or task.exception())):
            task = self._calibrating = asyncio.create_task(self._calibrate())
            task.add_done_callback(_retrieved)
        return await asyncio.shield(task)

    async def _calibrate(self) -> Matrix:
        started = time.perf_counter()
        options = EmbedOptions(normalize=False, truncate=Truncation.END, use_cache=False)
        result = await self._embed(list(self.calibration.texts), options)
        _log.info(
            "model %r: int8/uint8 ranges calibrated on %d %s texts in %.2f s",
            self.name,
            len(self.calibration.texts),
            self.calibration.source,
            time.perf_counter() - started,
        )
        return result.vectors

    @_within_request_timeout
    async def rerank(
        self, query: str, documents: list[str], options: RerankOptions
    ) -> RerankResult:
        """Score every (query, document) pair through the same scheduler as embeddings:
        pairs pack by token budget with other requests' work, in any worker."""
        self.require(ModelKind.RERANK)
        if not documents:
            raise InputError("documents must not be empty", param="documents")
        started = time.perf_counter()
        pairs = await self._off_loop_if_large(
            len(query) * len(documents) + sum(map(len, documents)),
            self.model.tokenizer.prepare_pairs,
            query,
            documents,
            options.truncate,
            options.max_tokens_per_doc,
        )
        tokenized = time.perf_counter()
        log = current()
        if log is not None:
            _note_tokenize(log, started, pairs)
        try:
            scheduled = await self._schedule([pair.ids for pair in pairs], Pooling.RANK)
        except PoisonInputError as exc:  # name the document, not an "input"
            if exc.index is None:
                raise
            message = str(exc).replace(f"input[{exc.index}]", f"document {exc.index}", 1)
            raise PoisonInputError(
                message, index=exc.index, param=f"documents[{exc.index}]"
            ) from None
        finished = time.perf_counter()
        logits = [float(scores[0, 0]) for scores in scheduled.outputs]
        order = sorted(range(len(pairs)), key=lambda i: -logits[i])  # stable: ties by index
        hits = tuple(
            RerankHit(
                index=i,
                relevance_score=_sigmoid(logits[i]),
                logit=logits[i],
                document=documents[i],
                tokens=len(pairs[i].ids),
                truncated=pairs[i].truncated,
            )
            for i in order[: options.top_n]
        )
        return RerankResult(
            model=self.name,
            hits=hits,
            total_tokens=sum(len(pair.ids) for pair in pairs),
            timings=Timings(
                tokenize=tokenized - started,
                queue=scheduled.queue_seconds,
                inference=scheduled.inference_seconds,
                postprocess=time.perf_counter() - finished,
            ),
        )

    def prefix_for(self, options: EmbedOptions) -> str | None:
        """None: no input_type asked; "": asked, but this model has no such prefix."""
        if options.input_type is None:
            return None
        if self.prompts is None:
            return ""
        return self.prompts.prefix(options.input_type, options.instruction)

    @_within_request_timeout
    async def embed_per_token(self, items: list[InputItem], truncate: Truncation) -> list[Matrix]:
        self.require(ModelKind.EMBEDDING)
        if truncate is Truncation.CHUNK:
            raise InputError(
                "truncate='chunk' averages windows into one vector; per-token output takes "
                "'end' or 'start'"
            )
        prepared = await self.tokenize(items, truncate)
        return (await self._schedule([item.ids for item in prepared], Pooling.NONE)).outputs

    @_within_request_timeout
    async def embed_tokens(
        self, items: list[InputItem], options: EmbedOptions, max_tokens: int | None = None
    ) -> tuple[list[Matrix], tuple[int, ...]]:
        """One vector per token (late interaction), normalized and cut like pooled ones.

        Returns the matrices and each input's token count; `max_tokens` bounds the total
        so one request cannot ask for an unbounded response.
        """
        self.require(ModelKind.EMBEDDING)
        if options.truncate is Truncation.CHUNK:
            return await self.embed_per_token(items, options.truncate), ()  # refused there
        check_dimensions(options.dimensions, self.model.dimensions)
        prefix = self.prefix_for(options) or ""
        prepared = await self.tokenize(items, options.truncate, prefix)
        counts = tuple(len(item.ids) for item in prepared)
        if max_tokens is not None and sum(counts) > max_tokens:
            raise InputError(
                f"per-token output of {sum(counts)} tokens exceeds this server's limit of "
                f"{max_tokens} per request"
            )
        outputs = (await self._schedule([item.ids for item in prepared], Pooling.NONE)).outputs
        method = resolve_normalization(self.config.normalization, options.normalize)
        norm_p, dims = self.config.norm_p, options.dimensions
        return [finish(tokens, method, norm_p, dims) for tokens in outputs], counts

    async def tokenize(
        self,
        items: list[InputItem],
        truncate: Truncation,
        prefix: str = "",
        chunking: Chunking | None = None,
    ) -> list[TokenizedInput]:
        # Everything that is tokenized counts: the prefix goes in front of every text.
        texts = sum(isinstance(item, str) for item in items)
        size = sum(len(item) for item in items) + len(prefix) * texts
        started = time.perf_counter()
        prepared: list[TokenizedInput] = await self._off_loop_if_large(
            size, self.model.tokenizer.prepare, items, truncate, prefix, chunking
        )
        log = current()
        if log is not None:
            _note_tokenize(log, started, prepared)
        return prepared

    async def token_spans(
        self,
        texts: Sequence[str],
        options: EmbedOptions,
        *,
        add_special: bool = True,
        max_tokens: int | None = None,
    ) -> list[TokenSpans]:
        """Each text's tokens with their spans in `prefix + text`, the prefix being the
        one `embed` puts in front for `options.input_type` (TEI's /tokenize)."""
        prefix = self.prefix_for(options) or ""
        tokenizer = self.model.tokenizer
        return await asyncio.to_thread(
            tokenizer.encode_spans,
            texts,
            add_special=add_special,
            prefix=prefix,
            max_tokens=max_tokens,
        )

    async def decode_ids(self, id_lists: Sequence[TokenArray], *, keep_special: bool) -> list[str]:
        """One text per id list; an id outside the vocabulary is an InvalidTokenError."""
        tokenizer = self.model.tokenizer

        def decode_all() -> list[str]:
            return [
                tokenizer.decode(ids, keep_special=keep_special, index=index)
                for index, ids in enumerate(id_lists)
            ]

        return await asyncio.to_thread(decode_all)

    @staticmethod
    async def _off_loop_if_large(size: int, function: Callable[..., T], *args: Any) -> T:
        if size > OFF_LOOP_TOKENIZE_SIZE:
            return await asyncio.to_thread(function, *args)
        return function(*args)

    async def _schedule(
        self, sequences: list[TokenIds], pooling: Pooling, positions: list[int] | None = None
    ) -> Scheduled:
        """Run `sequences`; an error about the k-th names input `positions[k]` instead."""
        backend = self.backend
        if backend.alive_count == 0 and backend.starting_count == 0:
            raise NoWorkerError(f"no live worker for model {self.name!r}")
        try:
            return await self.scheduler.run(sequences, pooling)
        except PoisonInputError as exc:  # the only input error raised after tokenizing
            if positions is None or exc.index is None:
                raise
            index = positions[exc.index]
            message = str(exc).replace(f"input[{exc.index}]", f"input[{index}]", 1)
            raise PoisonInputError(message, index=index) from None


def _note_tokenize(log: StageLog, started: float, prepared: Sequence[TokenizedInput]) -> None:
    """Counts only: a traced request's spans never carry its text."""
    log.add(
        "tokenize",
        started,
        time.perf_counter(),
        inputs=len(prepared),
        tokens=sum(len(item.ids) for item in prepared),
        truncated=sum(item.truncated for item in prepared),
    )


def _retrieved(task: asyncio.Task[Matrix]) -> None:
    """A calibration that failed with no caller left to see it is not an unhandled error."""
    if not task.cancelled():
        task.exception()


def _sigmoid(logit: float) -> float:
    """Without overflow for large |logit| (math.exp(800) raises)."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    z = math.exp(logit)
    return z / (1.0 + z)


def _combine_windows(
    outputs: list[Matrix], sequences: list[TokenIds], owners: list[int], count: int
) -> Matrix:
    """One pooled vector per input: a window-less input's own, else the mean of its
    windows' pooled vectors weighted by their token counts (before normalization)."""
    if len(outputs) == count:
        return np.stack(outputs)
    total = np.zeros((count, outputs[0].shape[-1]), dtype=np.float64)
    weights = np.zeros(count, dtype=np.float64)
    for vector, ids, owner in zip(outputs, sequences, owners, strict=True):
        total[owner] += len(ids) * vector.astype(np.float64)
        weights[owner] += len(ids)
    return (total / weights[:, None]).astype(np.float32)
