"""What the running server holds, and the only code that changes it while it runs.

The engine (its registry holds the served models), limits, access control, metrics.
Reload, load, unload, drain and undrain go through here: new models are started before they
are swapped in, and a replaced model keeps answering what it accepted until its queue
is empty. Models loaded through the admin API survive reloads unless the file names them.
Settings read once at start (socket, cache, logging) keep their running value through a
reload; the new value is reported as needing a restart, never shown as in force.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embellama.backends.factory import BackendFactory, default_backends
from embellama.cache import EmbeddingCache
from embellama.config import ModelSpec
from embellama.engine import AsyncEmbeddingEngine, drain_and_stop
from embellama.errors import ConfigError, EmbellamaError, ModelNotFoundError, NoWorkerError
from embellama.pipeline import FileStamp, ModelStats, ServedModel
from embellama.registry import plan_reload
from embellama.server.audit import AuditLog
from embellama.server.metrics import Metrics
from embellama.server.security import AccessControl

__all__ = ["Deployment", "ServerLimits", "ServerState"]

_log = logging.getLogger("embellama.server")
_audit = logging.getLogger("embellama.audit")


def _audit_weights(
    family: str, before: Mapping[str, float], after: Mapping[str, float], by: str
) -> None:
    _audit.info(
        "weights of model %r changed by %s: %s -> %s",
        family,
        by,
        dict(before),
        dict(after),
        extra={"action": "weights", "model": family, "before": dict(before), "after": dict(after)},
    )


def _drained() -> NoWorkerError:
    return NoWorkerError("the server drained; this work did not finish within the drain timeout")


@dataclass(frozen=True)
class ServerLimits:
    max_inputs_per_request: int = 2048
    max_body_bytes: int = 16 * 1024 * 1024
    # Token ids one /tokenize answer or /detokenize request may hold: the body limit alone
    # let a 1 MiB text of "!" become a million ids and a 318 MiB heap with pieces.
    max_tokenize_tokens: int = 1 << 18
    # Characters of a request's `instruction`: it is tokenized in front of every input.
    max_instruction_length: int = 2048


@dataclass(frozen=True)
class Deployment:
    """Everything a (re)load installs: the models and the request-facing settings."""

    models: tuple[ModelSpec, ...]
    limits: ServerLimits = field(default_factory=ServerLimits)
    access: AccessControl = field(default_factory=AccessControl)
    # The settings in force, secrets already masked: what GET /admin/config shows.
    settings: Mapping[str, Any] = field(default_factory=dict)
    # Admin-loaded model files must lie under this directory; None refuses every path.
    models_dir: Path | None = None
    # Turns an admin API body into a model, with the same checks as the config file.
    model_from_fields: Callable[[str, object], ModelSpec] | None = None
    # Builds the embedding cache; used once, at start (a reload keeps the running cache).
    cache: Callable[[], EmbeddingCache | None] | None = None
    # Names in `settings` that only a restart changes (host, port, cache, logging).
    restart_only: frozenset[str] = frozenset()


@dataclass
class ServerState:
    deployment: Deployment
    # Re-reads the configuration for a reload; None when there is nothing to re-read.
    source: Callable[[], Deployment] | None = None
    started: float = field(default_factory=time.time)
    draining: bool = False
    # Where models' decodes run (worker processes by each model's limits; tests: fakes).
    backends: BackendFactory = default_backends
    # Where admin actions, refused keys and signatures, and rate limits are recorded.
    audit: AuditLog = field(default_factory=AuditLog.disabled)
    engine: AsyncEmbeddingEngine = field(init=False)
    limits: ServerLimits = field(init=False)
    access: AccessControl = field(init=False)
    metrics: Metrics = field(init=False)
    # Models that could not start, by name, with why: reported, not served.
    failed: dict[str, str] = field(init=False)
    _failed_names: dict[str, str] = field(init=False)  # names and aliases -> name
    # Models loaded by `POST /admin/models/{name}/load`, by name: kept across reloads.
    admin_loaded: dict[str, ModelSpec] = field(init=False)
    # Settings the last reload read but could not apply: name -> in force / configured.
    restart_required: dict[str, dict[str, Any]] = field(init=False)
    _change_lock: asyncio.Lock = field(init=False)
    _retiring: set[asyncio.Task[None]] = field(init=False)
    # Models whose queues a timed-out drain closed: an undrain opens them again.
    _drain_closed: list[ServedModel] = field(init=False)

    def __post_init__(self) -> None:
        make_cache = self.deployment.cache
        self.engine = AsyncEmbeddingEngine(
            cache=make_cache() if make_cache else None, backends=self.backends
        )
        self.limits, self.access = self.deployment.limits, self.deployment.access
        self.metrics = Metrics(self._views, lambda: self.engine.cache)
        self.admin_loaded = {}
        self.failed, self._failed_names = {}, {}
        self.restart_required = {}
        self._change_lock = asyncio.Lock()
        self._retiring = set()
        self._drain_closed = []

    @property
    def services(self) -> list[ServedModel]:
        return list(self.engine.registry)

    def _views(self) -> list[ModelStats]:
        return [s.stats() for s in self.services]

    def queued_requests(self) -> int:
        return sum(s.stats().queued_requests for s in self.services)

    def _observe(self, service: ServedModel) -> ServedModel:
        name, version = service.name, service.version
        service.observe_batches(lambda sizes: self.metrics.observe_batch(name, sizes, version))
        return service

    def resolve(self, name: str | None, key: str | None = None) -> ServedModel:
        """`None` (no `model` in the request) means the first model; a versioned name
        picks the version assignment `key` gets by the weights (routing.py)."""
        return self._unless_failed(name, lambda n: self.engine.registry.resolve(n, key=key))

    def embedder(self, name: str | None, key: str | None = None) -> ServedModel:
        """`None` means the first embedding model (a reranker cannot embed)."""
        return self._unless_failed(name, lambda n: self.engine.embedder(n, key))

    def reranker(self, name: str | None, key: str | None = None) -> ServedModel:
        """`None` means the first reranker."""
        return self._unless_failed(name, lambda n: self.engine.reranker(n, key))

    async def set_weights(
        self, name: str, weights: Mapping[str, float]
    ) -> tuple[str, dict[str, float], dict[str, float]]:
        """New weights for a versioned name (validated by the registry), audited; the
        name, and its weights before and after. Waits for a reload or load in progress,
        like every other change, so the audit's "before" is what was in force."""
        async with self._change_lock:
            registry = self.engine.registry
            family = registry.family_of(name)
            before = registry.weights(family)
            after = self.engine.set_weights(family, weights)
            _audit_weights(family, before, after, "admin")
            return family, before, after

    def _unless_failed(
        self, name: str | None, lookup: Callable[[str | None], ServedModel]
    ) -> ServedModel:
        """A model that failed to start answers 503 with its reason, not 404."""
        try:
            return lookup(name)
        except ModelNotFoundError:
            primary = self._failed_names.get(name) if name is not None else None
            if primary is None:
                raise
            failure = self.failed[primary]
            raise NoWorkerError(f"model {name!r} failed to start: {failure}") from None

    async def start(self) -> None:
        """Start every model. One that cannot start fails the server when it is the only
        one; among several it is reported (`failed`: /ready, /v1/models, /info) and the
        others serve."""
        models = self.deployment.models
        for spec in models:
            config = spec.config
            try:
                await self.load_model(spec, from_admin=False)
            except EmbellamaError as exc:
                if len(models) == 1:
                    raise
                self.failed[config.resolved_name] = str(exc)
                aliases = config.aliases if config.family is None else ()
                for name in (config.resolved_name, *aliases):
                    self._failed_names[name] = config.resolved_name
                _log.error(
                    "model %r could not start; the other models serve: %s",
                    config.resolved_name,
                    exc,
                )
        if not self.services:
            raise NoWorkerError("no model could start: " + "; ".join(set(self.failed.values())))

    # -- changes while running ---------------------------------------------------------

    async def reload(self) -> list[str]:
        """Re-read the configuration and install it; on any error nothing changes."""
        if self.source is None:
            raise ConfigError("this server was not started with a config file to reload")
        async with self._change_lock:
            deployment, pending = self._in_force(await asyncio.to_thread(self.source))
            named = {spec.config.resolved_name for spec in deployment.models}
            desired = [*deployment.models] + [
                spec for name, spec in self.admin_loaded.items() if name not in named
            ]
            plan = await asyncio.to_thread(plan_reload, self.services, desired, FileStamp.of)
            fresh: list[ServedModel] = []
            try:
                for spec in plan.start:
                    fresh.append(await self._start(spec, replacing=plan.retire))
            except BaseException:
                await asyncio.gather(*(service.stop() for service in fresh))
                raise
            by_name = {s.name: s for s in (*plan.keep, *fresh)}
            before = self._all_weights()
            weights = {s.name: self.engine.registry.weight_of(s) for s in self.services}
            for spec in deployment.models:  # the file's weights; admin-loaded keep theirs
                if spec.config.weight is not None:
                    weights[spec.config.resolved_name] = spec.config.weight
            self.engine.registry.replace([by_name[name] for name in plan.order], weights)
            for family, after in self._all_weights().items():
                if before.get(family) != after:
                    _audit_weights(family, before.get(family, {}), after, "reload")
            self.admin_loaded = {n: v for n, v in self.admin_loaded.items() if n not in named}
            self.failed, self._failed_names = {}, {}  # every model named now serves
            self.limits = deployment.limits
            self.access = deployment.access.adopt(self.access)
            self.deployment, self.restart_required = deployment, pending
            for service in plan.retire:
                self._retire(service)
            _log.info("configuration reloaded: %s", ", ".join(by_name))
            if pending:
                _log.warning(
                    "reload left %s as running; they take effect after a restart",
                    ", ".join(pending),
                )
            return list(by_name)

    def _all_weights(self) -> dict[str, dict[str, float]]:
        registry = self.engine.registry
        return {family: registry.weights(family) for family in registry.families()}

    def _in_force(self, new: Deployment) -> tuple[Deployment, dict[str, dict[str, Any]]]:
        """`new` with the running value of every restart-only setting it changes, and
        those settings with both values."""
        running = self.deployment.settings
        pending = {
            name: {"in_force": running.get(name), "configured": value}
            for name, value in new.settings.items()
            if name in new.restart_only and running.get(name) != value
        }
        kept = {**new.settings, **{name: running.get(name) for name in pending}}
        return dataclasses.replace(new, settings=kept), pending

    async def load_model(self, spec: ModelSpec, *, from_admin: bool = True) -> ServedModel:
        async with self._change_lock:
            service = await self._start(spec)
            self.engine.registry.add(service)
            if from_admin:
                self.admin_loaded[service.name] = spec
            return service

    async def unload_model(self, name: str) -> None:
        async with self._change_lock:
            service = self.engine.registry.remove(name)
            self.admin_loaded.pop(service.name, None)
            await drain_and_stop(service)

    async def drain(self, timeout: float = 300.0) -> str:
        """Stop accepting embeddings until `undrain`; return "idle" once every queue is
        empty, "timeout" when what is still queued or running failed instead of waiting
        on, or "undrained" when an undrain came first (nothing is failed then)."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while self.queued_requests():
            if not self.draining:
                return "undrained"
            if time.monotonic() > deadline:
                for service in self.services:
                    service.close_queue(_drained)
                    self._drain_closed.append(service)
                return "timeout"
            await asyncio.sleep(0.02)
        return "idle" if self.draining else "undrained"

    def undrain(self) -> bool:
        """Accept new work again, in the queues a timed-out drain closed too; return
        whether the server was draining. A model retired meanwhile stays closed."""
        was_draining, self.draining = self.draining, False
        serving = {id(s) for s in self.services}
        for service in self._drain_closed:
            if id(service) in serving:
                service.reopen_queue()
        self._drain_closed = []
        return was_draining

    async def stop(self) -> None:
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.engine.aclose()

    async def _start(
        self, spec: ModelSpec, replacing: list[ServedModel] | None = None
    ) -> ServedModel:
        return self._observe(
            await self.engine.start_model(spec.config, spec.limits, replacing=replacing or [])
        )

    def _retire(self, service: ServedModel) -> None:
        task = asyncio.create_task(drain_and_stop(service))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
