"""Every Prometheus metric the server exports, defined in one place (`embellama_*`).

Metrics live in a registry owned by the app, never a module global, so two apps in
one process (tests) do not share counters. Gauges that mirror live state (queue depth,
workers) are read at scrape time from callbacks instead of being kept in sync.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from embellama.cache import EmbeddingCache
from embellama.pipeline import ModelStats
from embellama.results import EmbeddingResult, RerankResult

__all__ = ["Metrics"]

_ROUTES = frozenset(
    {
        "/v1/embeddings",
        "/embeddings",
        "/tokenize",
        "/detokenize",
        "/v1/rerank",
        "/rerank",
        "/v1/reranking",
        "/reranking",
        "/v2/rerank",
        "/v1/models",
        "/health",
        "/ready",
        "/info",
        "/metrics",
    }
)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_TOKEN_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def _rss_bytes(pid: int | None) -> int:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


class _LiveState(Collector):
    def __init__(self, views: Callable[[], Iterable[ModelStats]]) -> None:
        self._views = views

    def collect(self) -> Iterable[Metric]:
        label = ["model"]
        depth = GaugeMetricFamily(
            "embellama_queue_depth", "Requests queued or running.", labels=label
        )
        alive = GaugeMetricFamily(
            "embellama_workers_alive", "Worker processes ready to serve.", labels=label
        )
        busy = GaugeMetricFamily(
            "embellama_workers_busy", "Workers holding at least one batch.", labels=label
        )
        restarts = CounterMetricFamily(
            "embellama_worker_restarts", "Worker processes replaced.", labels=label
        )
        queued_tokens = GaugeMetricFamily(
            "embellama_queued_tokens", "Tokens of the requests queued or running.", labels=label
        )
        poison = CounterMetricFamily(
            "embellama_poison_inputs_refused",
            "Requests refused because an input had crashed a worker twice before.",
            labels=label,
        )
        memory = GaugeMetricFamily(
            "embellama_worker_resident_memory_bytes", "RSS of each model's workers.", labels=label
        )
        for view in self._views():
            workers = view.workers
            depth.add_metric([view.name], view.queued_requests)
            queued_tokens.add_metric([view.name], view.queued_tokens)
            poison.add_metric([view.name], view.poison_refused)
            alive.add_metric([view.name], sum(1 for w in workers if w.state == "ready"))
            busy.add_metric([view.name], sum(1 for w in workers if w.in_flight > 0))
            restarts.add_metric([view.name], sum(w.restarts for w in workers))
            memory.add_metric(
                [view.name], sum(_rss_bytes(w.pid) for w in workers if w.state == "ready")
            )
        yield from (depth, queued_tokens, poison, alive, busy, restarts, memory)


class _CacheState(Collector):
    """The cache's counters, read at scrape time from the cache object itself."""

    def __init__(self, cache: Callable[[], EmbeddingCache | None]) -> None:
        self._cache = cache

    def collect(self) -> Iterable[Metric]:
        cache = self._cache()
        if cache is None:
            return
        stats, memory, redis = cache.stats, cache.memory, cache.redis
        counters = {
            "hits": (stats.hits, "Inputs served from the cache (memory or Redis)."),
            "misses": (stats.misses, "Inputs not in the cache, computed."),
            "shared": (stats.shared, "Inputs computed once for several callers at once."),
            "evictions": (memory.evictions, "Entries the memory tier evicted (LRU)."),
        }
        if redis is not None:
            counters["redis_errors"] = (redis.errors, "Redis calls that failed; computed.")
            counters["redis_timeouts"] = (redis.timeouts, "Redis calls that timed out.")
            counters["redis_bad_values"] = (redis.bad_values, "Redis values of a wrong size.")
        for name, (value, text) in counters.items():
            family = CounterMetricFamily(f"embellama_cache_{name}", text)
            family.add_metric([], value)
            yield family
        size = GaugeMetricFamily("embellama_cache_bytes", "Bytes the memory tier holds.")
        size.add_metric([], memory.bytes)
        yield size
        entries = GaugeMetricFamily("embellama_cache_entries", "Vectors in the memory tier.")
        entries.add_metric([], len(memory))
        yield entries


class Metrics:
    def __init__(
        self,
        views: Callable[[], Iterable[ModelStats]],
        cache: Callable[[], EmbeddingCache | None] = lambda: None,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "embellama_requests",
            "HTTP requests by route, status and model.",
            ["route", "status", "model", "version"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "embellama_request_duration_seconds",
            "Whole request time.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "embellama_stage_duration_seconds",
            "Time per pipeline stage (tokenize, queue, inference).",
            ["stage", "model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inputs = Counter(
            "embellama_inputs",
            "Inputs embedded, or pairs scored.",
            ["model", "version"],
            registry=r,
        )
        self.tokens = Counter(
            "embellama_tokens", "Tokens embedded or scored.", ["model", "version"], registry=r
        )
        self.batch_size = Histogram(
            "embellama_batch_size",
            "Inputs per llama.cpp decode.",
            ["model", "version"],
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_tokens = Histogram(
            "embellama_batch_tokens",
            "Tokens per llama.cpp decode.",
            ["model", "version"],
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "embellama_rejected_requests", "Requests refused, by reason.", ["reason"], registry=r
        )
        ProcessCollector(namespace="embellama", registry=r)
        r.register(_LiveState(views))
        r.register(_CacheState(cache))

        # Labelled children by label values: `labels()` costs a lock, argument checks and
        # a tuple per call, seven times per request (second only to tokenization in a
        # cProfile of the server at 16 clients); prometheus keeps the children anyway.
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe_result(
        self, result: EmbeddingResult | RerankResult, inputs: int = 0, version: str = "1"
    ) -> None:
        """An embedding result, or a rerank result with its `inputs` (pairs scored);
        `version`: which version of its name the model is (`model` says name@version)."""
        timings, model, child = result.timings, result.model, self._child
        child(self.stage_seconds, "tokenize", model, version).observe(timings.tokenize)
        child(self.stage_seconds, "queue", model, version).observe(timings.queue)
        child(self.stage_seconds, "inference", model, version).observe(timings.inference)
        child(self.inputs, model, version).inc(inputs or len(result))
        child(self.tokens, model, version).inc(result.total_tokens)

    def observe_request(
        self, path: str, status: int, model: str, seconds: float, version: str = ""
    ) -> None:
        route = (
            path
            if path in _ROUTES
            else "/v1/models/{id}"
            if path.startswith("/v1/models/")
            else "other"
        )
        self._child(self.requests, route, str(status), model, version).inc()
        self._child(self.request_seconds, route).observe(seconds)

    def observe_batch(self, model: str, sizes: list[int], version: str = "1") -> None:
        self._child(self.batch_size, model, version).observe(len(sizes))
        self._child(self.batch_tokens, model, version).observe(sum(sizes))
