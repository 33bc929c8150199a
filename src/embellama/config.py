"""Frozen, validated configuration objects for the library.

Validation happens on construction so a bad value fails where it was written, not
deep inside llama.cpp. Nothing here reads the environment: the CLI does that.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from embellama.errors import ConfigError

__all__ = [
    "BatchingConfig",
    "EngineConfig",
    "InferenceEngine",
    "ModelConfig",
    "ModelKind",
    "ModelSpec",
    "Normalization",
    "Pooling",
    "QueueLimits",
    "ServiceLimits",
    "Truncation",
    "check_family_weights",
    "first_duplicate_name",
    "with_versions",
]


class Pooling(enum.StrEnum):
    """How per-token outputs become one vector. `NONE` keeps the per-token vectors."""

    MEAN = "mean"
    CLS = "cls"
    LAST = "last"
    MAX = "max"
    MEAN_SQRT = "mean_sqrt"
    NONE = "none"
    # A cross-encoder's classifier head over the first token: one score per sequence.
    # Decided by the model file (its head), never chosen for an embedding model.
    RANK = "rank"

    @classmethod
    def parse(cls, value: str | Pooling) -> Pooling:
        return _parse_enum(cls, value, "pooling")


class InferenceEngine(enum.StrEnum):
    """What runs a model's forward pass; tokenization is llama.cpp's whatever runs it.

    `AUTO` is ONNX Runtime for the files it runs (BERT-architecture embedding models
    with unquantized weights, on the CPU: verified against transformers and measured
    faster, bench/engines.md) and llama.cpp for every other file.
    """

    AUTO = "auto"
    LLAMA_CPP = "llama.cpp"
    ONNXRUNTIME = "onnxruntime"

    @classmethod
    def parse(cls, value: str | InferenceEngine) -> InferenceEngine:
        return _parse_enum(cls, value, "engine")


class ModelKind(enum.StrEnum):
    """What a model file computes: vectors per text, or a relevance score per pair."""

    EMBEDDING = "embedding"
    RERANK = "rerank"

    @classmethod
    def parse(cls, value: str | ModelKind) -> ModelKind:
        return _parse_enum(cls, value, "model kind")


class Normalization(enum.StrEnum):
    """How pooled vectors are scaled. `P_NORM` uses `ModelConfig.norm_p`."""

    NONE = "none"
    L2 = "l2"
    MAX_ABS = "max_abs"
    P_NORM = "p_norm"

    @classmethod
    def parse(cls, value: str | Normalization) -> Normalization:
        return _parse_enum(cls, value, "normalization")


class Truncation(enum.StrEnum):
    """What to do with an input longer than the context: fail, or cut one end off."""

    NONE = "none"
    END = "end"
    START = "start"
    # Split into context-sized windows, embed each, average weighted by tokens.
    CHUNK = "chunk"

    @classmethod
    def parse(cls, value: bool | str | Truncation | None) -> Truncation:
        """Accept the forms callers use: False/None (fail), True ("end"), or a name."""
        if value is None or value is False:
            return cls.NONE
        if value is True:
            return cls.END
        return _parse_enum(cls, value, "truncate")


E = TypeVar("E", bound=enum.Enum)


def _parse_enum(kind: type[E], value: object, what: str) -> E:
    if isinstance(value, kind):
        return value
    text = str(value).strip().lower().replace("-", "_")
    for member in kind:
        if member.value == text:
            return member
    choices = ", ".join(str(m.value) for m in kind)
    raise ConfigError(f"invalid {what} {value!r}; choose one of: {choices}")


# The sweep in bench/batch_budget.md chose these: on a 2-core CPU, decoding more than a
# few hundred tokens at once is slower per text because attention cost grows with the
# whole batch, while packing a handful of short texts amortizes per-decode overhead.
DEFAULT_MAX_BATCH_TOKENS = 256
DEFAULT_MAX_BATCH_SEQUENCES = 16


@dataclass(frozen=True)
class BatchingConfig:
    """How many tokens and sequences go into one llama.cpp decode.

    A single input longer than `max_batch_tokens` still runs, alone in its own decode:
    the budget groups short inputs, it never rejects a long one.
    """

    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    max_batch_sequences: int = DEFAULT_MAX_BATCH_SEQUENCES

    def __post_init__(self) -> None:
        if self.max_batch_tokens < 1:
            raise ConfigError(f"max_batch_tokens must be >= 1, got {self.max_batch_tokens}")
        if not 1 <= self.max_batch_sequences <= 256:
            raise ConfigError(
                f"max_batch_sequences must be in 1..256 (llama.cpp's limit), "
                f"got {self.max_batch_sequences}"
            )


@dataclass(frozen=True)
class ModelConfig:
    """One model to load. `pooling=None` means: use what the GGUF header says."""

    path: Path
    name: str | None = None
    aliases: tuple[str, ...] = ()
    n_ctx: int | None = None
    n_threads: int | None = None
    n_gpu_layers: int = 0
    pooling: Pooling | None = None
    normalization: Normalization = Normalization.L2
    norm_p: float = 2.0
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    # Put in front of texts embedded with input_type "query" / "document"; None: the
    # built-in table's (prompts.py) for this model's family, if any.
    query_prefix: str | None = None
    document_prefix: str | None = None
    # For instruction-following embedders: "... {instruction} ..." in front of queries.
    instruction_template: str | None = None
    # Append the vocabulary's EOS to every text (True), never (False), or as the GGUF's
    # add-EOS flag says (None). Token-id inputs are never changed.
    add_eos: bool | None = None
    # What the caller expects the file to be; None: whatever it is. A mismatch fails the
    # load, so a config entry meant for a reranker cannot quietly serve an embedder.
    kind: ModelKind | None = None
    # Serve an architecture no test here compares with its reference implementation.
    allow_unverified_architecture: bool = False
    # Names this model's cached vectors in place of the file's content fingerprint:
    # models (replicas) with the same cache_version and pooling share cache entries.
    cache_version: str | None = None
    # int8/uint8 ranges come from embedding this file's lines (one text per line)
    # instead of the built-in calibration set (calibration.py).
    calibration_file: Path | None = None
    # One of several versions served under `name` (issue 24): served as "name@version",
    # its own cache entries; None: the only version, served as `name` (and "1" in
    # headers and metrics). Aliases of a versioned model are its name's.
    version: str | None = None
    # Its share of the requests for `name` (relative to the other versions'); None: 100
    # for the first version of a name, 0 for the others. Routing, not the model: a
    # reload that changes only weights keeps the model running (compare=False).
    weight: float | None = field(default=None, compare=False)
    # What runs the forward pass (llama.cpp, or ONNX Runtime for a BERT-architecture file).
    engine: InferenceEngine = InferenceEngine.AUTO

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).expanduser())
        object.__setattr__(self, "engine", InferenceEngine.parse(self.engine))
        _check_version(self.version, self.weight)
        if self.calibration_file is not None:
            object.__setattr__(self, "calibration_file", Path(self.calibration_file).expanduser())
        object.__setattr__(self, "aliases", tuple(self.aliases))
        if self.pooling is not None:
            object.__setattr__(self, "pooling", Pooling.parse(self.pooling))
        if self.pooling is Pooling.RANK:
            raise ConfigError(
                "pooling 'rank' is not a setting: a model file with a classifier head is "
                "served as a reranker by itself"
            )
        if self.kind is not None:
            object.__setattr__(self, "kind", ModelKind.parse(self.kind))
        object.__setattr__(self, "normalization", Normalization.parse(self.normalization))
        if self.name is not None and not self.name.strip():
            raise ConfigError("model name must not be empty")
        if any(not alias.strip() for alias in self.aliases):
            raise ConfigError("model aliases must not be empty")
        if self.cache_version is not None and not self.cache_version.strip():
            raise ConfigError("cache_version must not be empty")
        if self.n_ctx is not None and self.n_ctx < 1:
            raise ConfigError(f"n_ctx must be >= 1, got {self.n_ctx}")
        if self.n_threads is not None and self.n_threads < 1:
            raise ConfigError(f"n_threads must be >= 1, got {self.n_threads}")
        if self.n_gpu_layers < -1:
            raise ConfigError(f"n_gpu_layers must be >= -1 (-1 = all), got {self.n_gpu_layers}")
        if not self.norm_p > 0:
            raise ConfigError(f"norm_p must be > 0, got {self.norm_p}")

    @property
    def base_name(self) -> str:
        """The name clients route by: explicit, else the file name sans suffix."""
        return self.name or self.path.stem

    @property
    def resolved_name(self) -> str:
        """The name the model is served under: `base_name`, with "@version" if versioned."""
        base = self.base_name
        return base if self.version is None else f"{base}@{self.version}"

    @property
    def family(self) -> str | None:
        """The name its versions share, for a versioned model; None for an only one."""
        return None if self.version is None else self.base_name

    @property
    def served_version(self) -> str:
        return self.version or "1"

    @property
    def resolved_threads(self) -> int:
        return self.n_threads or os.cpu_count() or 1


@dataclass(frozen=True)
class EngineConfig:
    """The models an engine loads at start. The first one is the default."""

    models: tuple[ModelConfig, ...] = ()

    def __post_init__(self) -> None:
        models = with_versions(self.models)
        object.__setattr__(self, "models", models)
        duplicate = first_duplicate_name(models)
        if duplicate is not None:
            raise ConfigError(f"model name or alias {duplicate!r} is used twice")
        check_family_weights(models)


def _check_version(version: str | None, weight: float | None) -> None:
    if version is not None and (
        not version.strip() or "@" in version or version != version.strip()
    ):
        raise ConfigError(
            f"model version must be non-empty, without '@' or spaces, got {version!r}"
        )
    if weight is not None and not (weight >= 0 and math.isfinite(weight)):
        raise ConfigError(f"model weight must be a finite number >= 0, got {weight}")


def with_versions(models: Sequence[ModelConfig]) -> tuple[ModelConfig, ...]:
    """Entries sharing a name are versions of it: one without `version` is "1". Every
    version gets its weight: as given, else 100 for a name's first and 0 for the rest."""
    counts = Counter(model.base_name for model in models)
    seen: set[str] = set()
    done: list[ModelConfig] = []
    for model in models:
        if model.version is None and counts[model.base_name] > 1:
            model = dataclasses.replace(model, version="1")
        if model.version is not None and model.weight is None:
            first = model.base_name not in seen
            model = dataclasses.replace(model, weight=100.0 if first else 0.0)
        seen.add(model.base_name)
        done.append(model)
    return tuple(done)


def first_duplicate_name(models: Sequence[ModelConfig]) -> str | None:
    """A name, alias or name@version claimed twice; a versioned name's aliases may repeat
    among its own versions (they are the name's), nowhere else."""
    owner: dict[str, object] = {}
    for index, model in enumerate(models):
        claims: list[tuple[str, object]] = [(model.resolved_name, index)]
        family = model.family
        routed = (family, *model.aliases) if family is not None else model.aliases
        claims += [(name, ("family", family) if family else index) for name in routed]
        for name, who in claims:
            if owner.setdefault(name, who) != who:
                return name
    return None


def check_family_weights(models: Sequence[ModelConfig]) -> None:
    """Each versioned name needs some weight to route to."""
    totals: dict[str, float] = {}
    for model in models:
        if model.family is not None:
            totals[model.family] = totals.get(model.family, 0.0) + (model.weight or 0.0)
    for family, total in totals.items():
        if not total > 0:
            raise ConfigError(f"the versions of model {family!r} have weights summing to 0")


@dataclass(frozen=True)
class QueueLimits:
    """Admission and fairness; `None` means unbounded (the library's default)."""

    max_queued_requests: int | None = None
    # Tokens of all queued requests: the memory a full queue holds, whatever its shape.
    max_queued_tokens: int | None = None
    # The longest a bulk request waits behind a stream of small ones before it goes next.
    bulk_max_wait: float = 0.5
    request_timeout: float | None = None


@dataclass(frozen=True)
class ServiceLimits:
    """Where decodes run and how much may wait. `workers=0`: in this process (library)."""

    workers: int = 0
    max_queued_requests: int | None = None
    max_queued_tokens: int | None = None
    request_timeout: float | None = None
    # Seconds one decode may run in a worker process before the worker is killed as hung.
    worker_hang_timeout: float | None = 300.0
    bulk_max_wait: float = 0.5
    # truncate="chunk": most windows one input may be split into (shown in /info).
    max_chunks_per_input: int = 64
    # "pooling": "none" over the API: most token vectors one response may hold.
    max_token_vectors: int = 16384
    # Bytes the model's workers may plan to use (None: 80 % of what the machine has
    # available); a default context that would need more is lowered to fit.
    memory_limit: int | None = None

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        hang = self.worker_hang_timeout
        if hang is not None and not hang > 0:
            raise ConfigError(f"worker_hang_timeout must be > 0, got {hang}")

    def queue(self) -> QueueLimits:
        return QueueLimits(
            max_queued_requests=self.max_queued_requests,
            max_queued_tokens=self.max_queued_tokens,
            bulk_max_wait=self.bulk_max_wait,
            request_timeout=self.request_timeout,
        )


@dataclass(frozen=True)
class ModelSpec:
    """What one served model should be: its file and settings, and its serving limits.

    The unit a configuration, a reload plan and the admin API hand around."""

    config: ModelConfig
    limits: ServiceLimits = field(default_factory=ServiceLimits)
