"""The library facade: a registry of loaded models and the embedding pipeline.

parse inputs -> tokenize and validate -> budgeted decodes -> pool -> normalize ->
Matryoshka truncation. Knows nothing about HTTP; the server calls this.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import numpy as np

from embellama.config import EngineConfig, ModelConfig, Pooling, Truncation
from embellama.default_model import DEFAULT_MODEL_NAME, require_default_model
from embellama.errors import ConfigError, ModelNotFoundError
from embellama.inputs import EmbedInput, InputItem, parse_inputs
from embellama.model.loaded import LoadedModel, ModelInfo
from embellama.results import EmbeddingResult, Timings
from embellama.vectors import Matrix, check_dimensions, finish, pool, resolve_normalization

__all__ = ["AsyncEmbeddingEngine", "EmbeddingEngine"]

TruncateArg = bool | str | Truncation | None
P = ParamSpec("P")
R = TypeVar("R")


class EmbeddingEngine:
    """Loads models and embeds with them; safe to call from many threads at once."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self._models: dict[str, LoadedModel] = {}
        self._names: dict[str, str] = {}
        self._default: str | None = None
        self._registry_lock = threading.Lock()
        try:
            for model in (config or EngineConfig()).models:
                self.load_model(model)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_path(cls, path: str | Path, **model_options: Any) -> EmbeddingEngine:
        """One model from a GGUF file; `model_options` are `ModelConfig` fields."""
        return cls(EngineConfig(models=(ModelConfig(path=Path(path), **model_options),)))

    @classmethod
    def default(cls, **model_options: Any) -> EmbeddingEngine:
        """The built-in all-MiniLM-L6-v2; fails with the command to run if not prepared."""
        model_options.setdefault("name", DEFAULT_MODEL_NAME)
        return cls.from_path(require_default_model(), **model_options)

    # -- registry -------------------------------------------------------------------

    def load_model(self, config: ModelConfig) -> ModelInfo:
        names = (config.resolved_name, *config.aliases)
        with self._registry_lock:
            taken = [name for name in names if name in self._names]
        if taken:
            raise ConfigError(f"model name or alias {taken[0]!r} is already loaded")
        model = LoadedModel(config)
        with self._registry_lock:
            if any(name in self._names for name in names):
                model.close()
                raise ConfigError(f"model name {config.resolved_name!r} was loaded concurrently")
            self._models[model.name] = model
            self._names.update(dict.fromkeys(names, model.name))
            self._default = self._default or model.name
        return model.info()

    def unload_model(self, name: str) -> None:
        with self._registry_lock:
            model = self._resolve_locked(name)
            del self._models[model.name]
            self._names = {k: v for k, v in self._names.items() if v != model.name}
            if self._default == model.name:
                self._default = next(iter(self._models), None)
        model.close()

    def list_models(self) -> list[ModelInfo]:
        with self._registry_lock:
            models = list(self._models.values())
        return [model.info() for model in models]

    def model_info(self, name: str | None = None) -> ModelInfo:
        return self._resolve(name).info()

    def _resolve(self, name: str | None) -> LoadedModel:
        with self._registry_lock:
            return self._resolve_locked(name)

    def _resolve_locked(self, name: str | None) -> LoadedModel:
        key = self._default if name is None else self._names.get(name)
        if key is None:
            raise ModelNotFoundError(name or "(default)", sorted(self._names))
        return self._models[key]

    # -- embedding ------------------------------------------------------------------

    def embed(
        self,
        input: EmbedInput,
        model: str | None = None,
        *,
        normalize: bool | None = None,
        dimensions: int | None = None,
        truncate: TruncateArg = False,
    ) -> Matrix:
        """`str` (or one token list) -> `(dim,)`; a list -> `(n, dim)`, in input order."""
        parsed = parse_inputs(input)
        result = self._embed_items(parsed.items, model, normalize, dimensions, truncate)
        return result.vectors[0] if parsed.single else result.vectors

    def embed_with_details(
        self,
        input: EmbedInput,
        model: str | None = None,
        *,
        normalize: bool | None = None,
        dimensions: int | None = None,
        truncate: TruncateArg = False,
    ) -> EmbeddingResult:
        """Like `embed`, always `(n, dim)`, plus token counts and per-stage timings."""
        return self._embed_items(parse_inputs(input).items, model, normalize, dimensions, truncate)

    def _embed_items(
        self,
        items: list[InputItem],
        model: str | None,
        normalize: bool | None,
        dimensions: int | None,
        truncate: TruncateArg,
    ) -> EmbeddingResult:
        loaded = self._resolve(model)
        pooling = loaded.pooling
        if pooling is Pooling.NONE:
            raise ConfigError(
                f"model {loaded.name!r} is configured with pooling 'none'; use embed_per_token"
            )
        check_dimensions(dimensions, loaded.dimensions)
        started = time.perf_counter()
        prepared = loaded.tokenizer.prepare(items, Truncation.parse(truncate))
        tokenized = time.perf_counter()
        outputs = loaded.token_outputs([item.ids for item in prepared])
        inferred = time.perf_counter()
        pooled = np.stack([pool(tokens, pooling) for tokens in outputs])
        method = resolve_normalization(loaded.config.normalization, normalize)
        vectors = finish(pooled, method, loaded.config.norm_p, dimensions)
        finished = time.perf_counter()
        return EmbeddingResult(
            model=loaded.name,
            vectors=vectors,
            token_counts=tuple(len(item.ids) for item in prepared),
            truncated=tuple(item.truncated for item in prepared),
            timings=Timings(
                tokenize=tokenized - started,
                inference=inferred - tokenized,
                postprocess=finished - inferred,
            ),
        )

    def embed_per_token(
        self, input: EmbedInput, model: str | None = None, *, truncate: TruncateArg = False
    ) -> list[Matrix]:
        """Unpooled `(n_tokens, dim)` outputs per input, special tokens included."""
        loaded = self._resolve(model)
        prepared = loaded.tokenizer.prepare(parse_inputs(input).items, Truncation.parse(truncate))
        return loaded.token_outputs([item.ids for item in prepared])

    # -- tokens ---------------------------------------------------------------------

    def tokenize(
        self, text: str, model: str | None = None, *, add_special: bool = True
    ) -> list[int]:
        ids = self._resolve(model).tokenizer.encode_text(text, add_special=add_special)
        return [int(token) for token in ids]

    def detokenize(self, tokens: Sequence[int], model: str | None = None) -> str:
        return self._resolve(model).tokenizer.detokenize(tokens)

    def count_tokens(self, input: EmbedInput, model: str | None = None) -> list[int]:
        """Tokens each input would use, before truncation, special tokens included."""
        tokenizer = self._resolve(model).tokenizer
        counts = []
        for index, item in enumerate(parse_inputs(input).items):
            ids = tokenizer.encode_text(item, index) if isinstance(item, str) else item
            counts.append(len(ids))
        return counts

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        with self._registry_lock:
            models = list(self._models.values())
            self._models.clear()
            self._names.clear()
            self._default = None
        for model in models:
            model.close()

    def __enter__(self) -> EmbeddingEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncEmbeddingEngine:
    """The same API for asyncio: inference runs on worker threads, never on the loop."""

    def __init__(self, engine: EmbeddingEngine, *, max_threads: int = 4) -> None:
        self.engine = engine
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="embellama")

    @classmethod
    async def create(cls, config: EngineConfig | None = None) -> AsyncEmbeddingEngine:
        """Load models off the event loop (loading reads and maps the whole file)."""
        engine = await asyncio.to_thread(EmbeddingEngine, config)
        return cls(engine)

    async def _call(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    async def embed(self, input: EmbedInput, model: str | None = None, **options: Any) -> Matrix:
        return await self._call(self.engine.embed, input, model, **options)

    async def embed_with_details(
        self, input: EmbedInput, model: str | None = None, **options: Any
    ) -> EmbeddingResult:
        return await self._call(self.engine.embed_with_details, input, model, **options)

    async def embed_per_token(
        self, input: EmbedInput, model: str | None = None, **options: Any
    ) -> list[Matrix]:
        return await self._call(self.engine.embed_per_token, input, model, **options)

    async def tokenize(self, text: str, model: str | None = None) -> list[int]:
        return await self._call(self.engine.tokenize, text, model)

    async def count_tokens(self, input: EmbedInput, model: str | None = None) -> list[int]:
        return await self._call(self.engine.count_tokens, input, model)

    async def load_model(self, config: ModelConfig) -> ModelInfo:
        return await self._call(self.engine.load_model, config)

    async def unload_model(self, name: str) -> None:
        await self._call(self.engine.unload_model, name)

    def list_models(self) -> list[ModelInfo]:
        return self.engine.list_models()

    async def aclose(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        self.engine.close()

    async def __aenter__(self) -> AsyncEmbeddingEngine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
