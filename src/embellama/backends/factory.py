"""Where a served model's decodes run, chosen once, where the model is loaded.

`ServedModel` is given a `BackendFactory` instead of picking its own backend, so the
same pipeline runs over a thread of this process, over worker processes, or (in tests)
over any other `Backend`. Knows nothing of the pipeline that uses the backend.
"""

from __future__ import annotations

from typing import Protocol

from embellama.backends.base import Backend
from embellama.backends.inprocess import InProcessBackend
from embellama.backends.pool import WorkerPool
from embellama.config import InferenceEngine, ModelConfig, ServiceLimits
from embellama.model.loaded import LoadedModel

__all__ = ["BackendFactory", "DefaultBackends", "default_backends"]


class BackendFactory(Protocol):
    def decodes_here(self, limits: ServiceLimits) -> bool:
        """Whether the backend decodes with this process's copy of the model: if not,
        only its vocabulary is loaded here (tokenize and validate, no weights)."""
        ...

    def build(self, model: LoadedModel, config: ModelConfig, limits: ServiceLimits) -> Backend:
        """The backend for `model`; `config` is what was loaded (its context fitted to
        the machine), which worker processes must load too."""
        ...


class DefaultBackends:
    """`workers=0`: one decode thread in this process; else that many worker processes."""

    def decodes_here(self, limits: ServiceLimits) -> bool:
        return limits.workers == 0

    def build(self, model: LoadedModel, config: ModelConfig, limits: ServiceLimits) -> Backend:
        if self.decodes_here(limits):
            return InProcessBackend(model)
        # Workers refuse to start on a file with another fingerprint than this one.
        return WorkerPool(
            config,
            limits.workers,
            limits.worker_hang_timeout,
            fingerprint=model.fingerprint,
            lends_threads=model.engine is InferenceEngine.LLAMA_CPP,
        )


default_backends = DefaultBackends()
