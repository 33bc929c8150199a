"""One served model: tokenizer here, inference in supervised worker processes.

The server process loads only the vocabulary (to validate and count tokens before
anything is queued); the weights live in the workers. Knows nothing about HTTP.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from embellama.batching.scheduler import Scheduler
from embellama.config import ModelConfig, Truncation
from embellama.errors import NoWorkerError
from embellama.inputs import InputItem
from embellama.model.loaded import LoadedModel, ModelInfo
from embellama.results import EmbeddingResult, Timings
from embellama.vectors import check_dimensions, finish, resolve_normalization
from embellama.workers.pool import WorkerPool, WorkerStatus

__all__ = ["ModelService", "ServiceLimits"]

# Tokenizing this many inputs or more moves off the event loop.
_THREAD_TOKENIZE_AT = 64


@dataclass(frozen=True)
class ServiceLimits:
    workers: int = 1
    max_queued_requests: int = 256
    request_timeout: float = 60.0


class ModelService:
    def __init__(self, config: ModelConfig, limits: ServiceLimits) -> None:
        self.config = config
        self.limits = limits
        self.model = LoadedModel(config, inference=False)
        self.scheduler = Scheduler(
            config.batching, self.model.pooling, max_queued_requests=limits.max_queued_requests
        )
        self.pool = WorkerPool(config, limits.workers, self.scheduler.feed)

    @property
    def name(self) -> str:
        return self.model.name

    def info(self) -> ModelInfo:
        return self.model.info()

    async def start(self) -> None:
        await self.pool.start()
        if self.pool.alive_count == 0:
            raise NoWorkerError(f"no worker for model {self.name!r} could start")

    async def stop(self) -> None:
        await self.pool.stop()

    @property
    def ready(self) -> bool:
        return self.pool.alive_count > 0 and not self.scheduler.overloaded

    def workers(self) -> list[WorkerStatus]:
        return self.pool.status()

    async def embed(
        self,
        items: list[InputItem],
        *,
        truncate: Truncation = Truncation.NONE,
        normalize: bool | None = None,
        dimensions: int | None = None,
    ) -> EmbeddingResult:
        started = time.perf_counter()
        check_dimensions(dimensions, self.model.dimensions)
        if len(items) >= _THREAD_TOKENIZE_AT:
            prepared = await asyncio.to_thread(self.model.tokenizer.prepare, items, truncate)
        else:
            prepared = self.model.tokenizer.prepare(items, truncate)
        if self.pool.alive_count == 0 and self.pool.starting_count == 0:
            raise NoWorkerError(f"no live worker for model {self.name!r}")
        tokenized = time.perf_counter()
        outcome = await self.scheduler.embed(
            [item.ids for item in prepared], self.limits.request_timeout
        )
        finished = time.perf_counter()
        method = resolve_normalization(self.config.normalization, normalize)
        vectors = finish(outcome.vectors, method, self.config.norm_p, dimensions)
        return EmbeddingResult(
            model=self.name,
            vectors=vectors,
            token_counts=tuple(len(item.ids) for item in prepared),
            truncated=tuple(item.truncated for item in prepared),
            timings=Timings(
                tokenize=tokenized - started,
                queue=outcome.queue_seconds,
                inference=outcome.inference_seconds,
                postprocess=time.perf_counter() - finished,
            ),
        )
