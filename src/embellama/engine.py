"""The public API: `AsyncEmbeddingEngine` and its blocking twin `EmbeddingEngine`.

Both are the same pipeline (`pipeline.ServedModel`) over the same registry. The async
engine lives on the event loop that created it, so all its callers share one scheduler
per model: concurrent calls are batched together. The sync engine runs an async engine
on a private loop thread, so calls from many threads are batched together too. The
server uses the async engine with worker processes. Knows nothing about HTTP.

Closing answers every caller: queued and running work fails with `EngineClosedError`.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack, overload

import numpy as np
import numpy.typing as npt

from embellama.backends.factory import BackendFactory, default_backends
from embellama.cache import EmbeddingCache
from embellama.config import EngineConfig, ModelConfig, ModelKind, ServiceLimits, Truncation
from embellama.default_model import DEFAULT_MODEL_NAME, require_default_model
from embellama.errors import EngineClosedError, InputError
from embellama.inputs import EmbedInput, parse_inputs
from embellama.loop_thread import LoopThread, close_at_exit
from embellama.model.loaded import ModelInfo
from embellama.model.native import TokenIds
from embellama.model.tokenizer import Tokenizer, TokenPieces
from embellama.options import (
    EmbedKeywords,
    EmbedOptions,
    RerankKeywords,
    RerankOptions,
    TruncateArg,
)
from embellama.pipeline import ServedModel
from embellama.registry import ModelRegistry
from embellama.results import EmbeddingResult, RerankResult
from embellama.stages import current
from embellama.vectors import Matrix

__all__ = ["AsyncEmbeddingEngine", "EmbeddingEngine"]

T = TypeVar("T")
# One input (a string or one flat token-id list) gives one value; a list of them, a list.
SingleInput = str | Sequence[int]
ManyInputs = Sequence[str] | Sequence[Sequence[int]]


class AsyncEmbeddingEngine:
    """Loads models and embeds with them on the running event loop; never blocks it."""

    def __init__(
        self,
        limits: ServiceLimits | None = None,
        *,
        cache: EmbeddingCache | None = None,
        backends: BackendFactory = default_backends,
    ) -> None:
        """An engine with no models; `limits` apply to models loaded without their own.

        `cache` (off by default in the library): `EmbeddingCache.create("256MB")`, with
        `redis_url=` for a tier shared by processes. The engine closes it on `aclose`.
        `backends`: where models' decodes run (default: by `limits.workers`).
        """
        self.limits = limits or ServiceLimits()
        self.cache = cache
        self.backends = backends
        self.registry: ModelRegistry[ServedModel] = ModelRegistry()
        self._closed = False

    @classmethod
    async def create(
        cls,
        config: EngineConfig | None = None,
        *,
        limits: ServiceLimits | None = None,
        cache: EmbeddingCache | None = None,
        backends: BackendFactory = default_backends,
    ) -> AsyncEmbeddingEngine:
        engine = cls(limits, cache=cache, backends=backends)
        try:
            for model in (config or EngineConfig()).models:
                await engine.load_model(model)
        except BaseException:
            await engine.aclose()
            raise
        return engine

    # -- registry -------------------------------------------------------------------

    async def start_model(
        self,
        config: ModelConfig,
        limits: ServiceLimits | None = None,
        *,
        replacing: Sequence[ServedModel] = (),
        backends: BackendFactory | None = None,
    ) -> ServedModel:
        """Load and start a model without registering it (a reload swaps it in later).

        `backends`: where its decodes run, if not where the engine's models' do."""
        self._check_open()
        names = [config.resolved_name, *config.aliases]
        self.registry.check_free(names, family=config.family, ignoring=replacing)
        served = await asyncio.to_thread(
            ServedModel,
            config,
            limits or self.limits,
            self.cache,
            backends=backends or self.backends,
        )
        try:
            await served.start()
        except BaseException:
            await served.stop()
            raise
        return served

    async def load_model(
        self,
        config: ModelConfig,
        limits: ServiceLimits | None = None,
        *,
        backends: BackendFactory | None = None,
    ) -> ModelInfo:
        served = await self.start_model(config, limits, backends=backends)
        try:
            self._check_open()  # closed while it loaded: it must not outlive the engine
            self.registry.add(served)  # a concurrent load may have taken the name
        except BaseException:
            await served.stop()
            raise
        return served.info()

    async def unload_model(self, name: str) -> None:
        """Stop serving `name` (or an alias); work it already accepted is finished first."""
        served = self.registry.remove(name)
        await drain_and_stop(served)

    def list_models(self) -> list[ModelInfo]:
        return [served.info() for served in self.registry]

    async def model_info(self, name: str | None = None) -> ModelInfo:
        """Includes the file's sha256, hashed on a thread (it reads the whole file)."""
        served = self._resolve(name)
        return await asyncio.to_thread(served.info, with_sha256=True)

    # -- embedding ------------------------------------------------------------------

    async def embed(
        self,
        input: EmbedInput,
        model: str | None = None,
        *,
        ab_key: str | None = None,
        **options: Unpack[EmbedKeywords],
    ) -> Matrix:
        """`str` (or one token list) -> `(dim,)`; a list -> `(n, dim)`, in input order.

        `options` are `EmbedKeywords` (options.py, which says what each one does):
        e.g. `truncate=True`, `dimensions=256`, `input_type="query"`. `model="name@v2"`
        pins a version; `model="name"` picks one by weight, the same for one `ab_key`
        while the weights stand (no key: every keyless call gets the same version).
        """
        parsed = parse_inputs(input)
        served = self.embedder(model, ab_key)
        result = await served.embed(parsed.items, EmbedOptions.from_keywords(options))
        return result.vectors[0] if parsed.single else result.vectors

    async def embed_with_details(
        self,
        input: EmbedInput,
        model: str | None = None,
        *,
        ab_key: str | None = None,
        **options: Unpack[EmbedKeywords],
    ) -> EmbeddingResult:
        """Like `embed`, always `(n, dim)`, plus token counts, cache hits and timings;
        `result.model` names the version that served ("name@version")."""
        return await self.embedder(model, ab_key).embed(
            parse_inputs(input).items, EmbedOptions.from_keywords(options)
        )

    @overload
    async def embed_per_token(  # type: ignore[overload-overlap]  # a str is a Sequence[str]
        self, input: SingleInput, model: str | None = None, *, truncate: TruncateArg = False
    ) -> Matrix: ...

    @overload
    async def embed_per_token(
        self, input: ManyInputs, model: str | None = None, *, truncate: TruncateArg = False
    ) -> list[Matrix]: ...

    async def embed_per_token(
        self, input: EmbedInput, model: str | None = None, *, truncate: TruncateArg = False
    ) -> Matrix | list[Matrix]:
        """Unpooled outputs, special tokens included: a string (or one token list) ->
        its `(n_tokens, dim)`; a list -> a list of them, in input order."""
        return await self._per_token_any(input, model, truncate=truncate)

    async def _per_token_any(
        self, input: EmbedInput, model: str | None = None, *, truncate: TruncateArg = False
    ) -> Matrix | list[Matrix]:
        """`embed_per_token` for an input whose form is known only at run time."""
        served = self.embedder(model)
        parsed = parse_inputs(input)
        outputs = await served.embed_per_token(parsed.items, Truncation.parse(truncate))
        return outputs[0] if parsed.single else outputs

    def embedder(self, name: str | None, key: str | None = None) -> ServedModel:
        """`name`, or with none given the first embedding model (not a reranker); a
        versioned name's version chosen for assignment `key` (routing.py)."""
        return self._resolve(name, lambda served: served.kind is ModelKind.EMBEDDING, key)

    def reranker(self, name: str | None, key: str | None = None) -> ServedModel:
        """`name`, or with none given the first reranker."""
        return self._resolve(name, lambda served: served.kind is ModelKind.RERANK, key)

    def _resolve(
        self,
        name: str | None,
        prefer: Callable[[ServedModel], bool] | None = None,
        key: str | None = None,
    ) -> ServedModel:
        self._check_open()
        return self.registry.resolve(name, prefer, key)

    def weights(self, name: str) -> dict[str, float]:
        """The weight of each version of `name` (a versioned name or alias)."""
        return self.registry.weights(name)

    def set_weights(self, name: str, weights: Mapping[str, float]) -> dict[str, float]:
        """Route `name` by new weights (`{"v2": 100}` promotes v2; a version left out
        gets 0 and serves pinned calls only); returns every version's weight."""
        self._check_open()
        return self.registry.set_weights(name, weights)

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError("this engine is closed")

    def _tokenizer(self, name: str | None) -> Tokenizer:
        """Its calls hold the model's lease: an unload meanwhile cannot free the vocabulary."""
        return self._resolve(name).model.tokenizer

    # -- rerank ---------------------------------------------------------------------

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        model: str | None = None,
        **options: Unpack[RerankKeywords],
    ) -> RerankResult:
        """Score each document against `query` with a cross-encoder; best first.

        `options` are `RerankKeywords` (options.py). Scores are the sigmoid of the model's logit (`hit.logit`).
        """
        if isinstance(documents, str) or not all(isinstance(d, str) for d in documents):
            raise InputError("documents must be a list of strings", param="documents")
        parsed = RerankOptions.from_keywords(options, top_n)
        return await self.reranker(model).rerank(query, list(documents), parsed)

    # -- tokens ---------------------------------------------------------------------

    async def tokenize(
        self,
        text: str,
        model: str | None = None,
        *,
        add_special: bool = True,
        parse_special: bool = False,
    ) -> list[int]:
        """Token ids of `text`; with the defaults, exactly what `embed(text)` decodes.

        `parse_special=True` reads special-token syntax ("[SEP]") in the text as those
        tokens, as llama-server's /tokenize does; embedding never does.
        """
        ids = await self.token_ids(
            text, model, add_special=add_special, parse_special=parse_special
        )
        return [int(token) for token in ids.tolist()]

    async def token_ids(
        self,
        text: str,
        model: str | None = None,
        *,
        add_special: bool = True,
        parse_special: bool = False,
        max_tokens: int | None = None,
    ) -> TokenIds:
        """`tokenize` as an int32 array; over `max_tokens` raises TokenLimitError before
        memory for the whole text's tokens is taken (the server's per-request cap)."""
        tokenizer = self._tokenizer(model)
        if not text:
            return np.zeros(0, np.int32)
        started = time.perf_counter()
        ids = await asyncio.to_thread(
            tokenizer.encode_text,
            text,
            add_special=add_special,
            parse_special=parse_special,
            max_tokens=max_tokens,
        )
        _note_tokenize(started, len(ids))
        return ids

    async def detokenize(
        self, tokens: Sequence[int] | npt.NDArray[np.integer], model: str | None = None
    ) -> str:
        return await asyncio.to_thread(self._tokenizer(model).detokenize, tokens)

    async def token_pieces(
        self, tokens: Sequence[int] | npt.NDArray[np.integer], model: str | None = None
    ) -> list[bytes]:
        """The bytes each token stands for; one may end inside a UTF-8 character."""
        return await asyncio.to_thread(self._tokenizer(model).pieces, tokens)

    async def tokenize_with_pieces(
        self,
        text: str,
        model: str | None = None,
        *,
        add_special: bool = True,
        parse_special: bool = False,
    ) -> list[tuple[int, bytes]]:
        """`tokenize` and `token_pieces` from one model in one call: a reload between two
        calls could otherwise render the ids with another vocabulary."""
        table = await self.token_piece_table(
            text, model, add_special=add_special, parse_special=parse_special
        )
        return list(zip(table.ids.tolist(), table.pieces_in_order(), strict=True))

    async def token_piece_table(
        self,
        text: str,
        model: str | None = None,
        *,
        add_special: bool = True,
        parse_special: bool = False,
        max_tokens: int | None = None,
    ) -> TokenPieces:
        """Ids and the piece of each distinct id, under one lease (one vocabulary); a
        response is built from it without one Python object per token."""
        tokenizer = self._tokenizer(model)
        started = time.perf_counter()
        table = await asyncio.to_thread(
            tokenizer.encode_with_pieces,
            text,
            add_special=add_special,
            parse_special=parse_special,
            max_tokens=max_tokens,
        )
        _note_tokenize(started, len(table.ids))
        return table

    @overload
    async def count_tokens(  # type: ignore[overload-overlap]  # a str is a Sequence[str]
        self, input: SingleInput, model: str | None = None
    ) -> int: ...

    @overload
    async def count_tokens(self, input: ManyInputs, model: str | None = None) -> list[int]: ...

    async def count_tokens(self, input: EmbedInput, model: str | None = None) -> int | list[int]:
        """Tokens an input would use, before truncation, special tokens included: a
        string (or one token list) -> an int; a list -> one count per input."""
        return await self._count_any(input, model)

    async def _count_any(self, input: EmbedInput, model: str | None = None) -> int | list[int]:
        """`count_tokens` for an input whose form is known only at run time."""
        tokenizer = self._tokenizer(model)
        parsed = parse_inputs(input)

        def count() -> list[int]:
            return [
                len(tokenizer.encode_text(item, index) if isinstance(item, str) else item)
                for index, item in enumerate(parsed.items)
            ]

        counts = await asyncio.to_thread(count)
        return counts[0] if parsed.single else counts

    # -- lifecycle ------------------------------------------------------------------

    async def clear_cache(self, model: str | None = None) -> dict[str, int]:
        """Drop cached vectors: every model's, or one model's (name or alias)."""
        if self.cache is None:
            return {}
        self._check_open()
        prefix = b"" if model is None else self.registry.exact(model).cache_tag.tag
        return await self.cache.clear(prefix)

    async def aclose(self) -> None:
        """Fail every queued and running call with `EngineClosedError`, then free the
        models (each once its last tokenizer call or decode ends). Idempotent."""
        if self._closed:
            return
        self._closed = True
        models = list(self.registry)
        self.registry.replace([])
        await asyncio.gather(*(served.stop(_engine_closed) for served in models))
        if self.cache is not None:
            await self.cache.close()

    async def close(self) -> None:
        """`await engine.close()`: the same as `aclose`, under the blocking twin's name."""
        await self.aclose()

    async def __aenter__(self) -> AsyncEmbeddingEngine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _engine_closed() -> EngineClosedError:
    return EngineClosedError("the engine was closed")


async def drain_and_stop(served: ServedModel, grace: float = 5.0) -> None:
    """Let a model no longer in the registry finish what it accepted, then stop it."""
    timeout = served.limits.request_timeout
    deadline = asyncio.get_running_loop().time() + (timeout or 3600.0) + grace
    while served.scheduler.queued_requests and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    await served.stop()


async def _on_loop(function: Callable[[], T]) -> T:
    """Run a quick registry read on the engine's loop, the only thread that changes it."""
    return function()


class EmbeddingEngine:
    """The blocking API over the same pipeline; safe to call from many threads at once.

    Runs an `AsyncEmbeddingEngine` on a private event-loop thread, so concurrent calls
    share decodes exactly as the server's requests do.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        cache: EmbeddingCache | None = None,
        limits: ServiceLimits | None = None,
        backends: BackendFactory = default_backends,
    ) -> None:
        """`cache`: see `AsyncEmbeddingEngine`; off by default, one argument to turn on.
        `limits`: `ServiceLimits(workers=N)` decodes in N worker processes instead of a
        thread of this process. `backends`: see `AsyncEmbeddingEngine`."""
        self._runner = LoopThread("embellama-engine")
        try:
            self.engine = self._call(
                AsyncEmbeddingEngine.create(config, cache=cache, limits=limits, backends=backends)
            )
        except BaseException:
            self._runner.close()
            raise
        # An engine never closed (no `with`, no close()) still shuts down quietly when it
        # is collected or the interpreter exits, instead of leaving pending tasks behind.
        self._finalizer = weakref.finalize(self, self._runner.close, self.engine.aclose)
        close_at_exit(self._finalizer)

    @classmethod
    def from_path(
        cls, path: str | Path, *, cache: EmbeddingCache | None = None, **model_options: Any
    ) -> EmbeddingEngine:
        """One model from a GGUF file; `model_options` are `ModelConfig` fields."""
        config = EngineConfig(models=(ModelConfig(path=Path(path), **model_options),))
        return cls(config, cache=cache)

    @classmethod
    def default(cls, **model_options: Any) -> EmbeddingEngine:
        """The built-in all-MiniLM-L6-v2; fails with the command to run if not prepared."""
        model_options.setdefault("name", DEFAULT_MODEL_NAME)
        return cls.from_path(require_default_model(), **model_options)

    def clear_cache(self, model: str | None = None) -> dict[str, int]:
        return self._call(self.engine.clear_cache(model))

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return self._runner.call(work)

    # -- registry -------------------------------------------------------------------

    def load_model(self, config: ModelConfig) -> ModelInfo:
        return self._call(self.engine.load_model(config))

    def unload_model(self, name: str) -> None:
        self._call(self.engine.unload_model(name))

    def list_models(self) -> list[ModelInfo]:
        return self._call(_on_loop(self.engine.list_models))

    def model_info(self, name: str | None = None) -> ModelInfo:
        return self._call(self.engine.model_info(name))

    # -- embedding ------------------------------------------------------------------

    def embed(
        self,
        input: EmbedInput,
        model: str | None = None,
        *,
        ab_key: str | None = None,
        **options: Unpack[EmbedKeywords],
    ) -> Matrix:
        """`str` (or one token list) -> `(dim,)`; a list -> `(n, dim)`, in input order.

        Options: those of `AsyncEmbeddingEngine.embed` (`EmbedKeywords`, `ab_key`).
        """
        return self._call(self.engine.embed(input, model, ab_key=ab_key, **options))

    def embed_with_details(
        self,
        input: EmbedInput,
        model: str | None = None,
        *,
        ab_key: str | None = None,
        **options: Unpack[EmbedKeywords],
    ) -> EmbeddingResult:
        """Like `embed`, always `(n, dim)`, plus token counts and per-stage timings."""
        return self._call(self.engine.embed_with_details(input, model, ab_key=ab_key, **options))

    def weights(self, name: str) -> dict[str, float]:
        return self._call(_on_loop(lambda: self.engine.weights(name)))

    def set_weights(self, name: str, weights: Mapping[str, float]) -> dict[str, float]:
        return self._call(_on_loop(lambda: self.engine.set_weights(name, weights)))

    @overload
    def embed_per_token(  # type: ignore[overload-overlap]  # a str is a Sequence[str]
        self, input: SingleInput, model: str | None = None, *, truncate: TruncateArg = False
    ) -> Matrix: ...

    @overload
    def embed_per_token(
        self, input: ManyInputs, model: str | None = None, *, truncate: TruncateArg = False
    ) -> list[Matrix]: ...

    def embed_per_token(
        self, input: EmbedInput, model: str | None = None, *, truncate: TruncateArg = False
    ) -> Matrix | list[Matrix]:
        """A string (or one token list) -> its unpooled `(n_tokens, dim)`; a list -> a
        list of them. Special tokens included."""
        return self._call(self.engine._per_token_any(input, model, truncate=truncate))

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        model: str | None = None,
        **options: Unpack[RerankKeywords],
    ) -> RerankResult:
        """Score each document against `query` with a cross-encoder; best first."""
        return self._call(self.engine.rerank(query, documents, top_n, model=model, **options))

    # -- tokens ---------------------------------------------------------------------

    def tokenize(
        self,
        text: str,
        model: str | None = None,
        *,
        add_special: bool = True,
        parse_special: bool = False,
    ) -> list[int]:
        return self._call(
            self.engine.tokenize(text, model, add_special=add_special, parse_special=parse_special)
        )

    def detokenize(self, tokens: Sequence[int], model: str | None = None) -> str:
        return self._call(self.engine.detokenize(tokens, model))

    def token_pieces(self, tokens: Sequence[int], model: str | None = None) -> list[bytes]:
        return self._call(self.engine.token_pieces(tokens, model))

    def tokenize_with_pieces(
        self,
        text: str,
        model: str | None = None,
        *,
        add_special: bool = True,
        parse_special: bool = False,
    ) -> list[tuple[int, bytes]]:
        return self._call(
            self.engine.tokenize_with_pieces(
                text, model, add_special=add_special, parse_special=parse_special
            )
        )

    @overload
    def count_tokens(  # type: ignore[overload-overlap]  # a str is a Sequence[str]
        self, input: SingleInput, model: str | None = None
    ) -> int: ...

    @overload
    def count_tokens(self, input: ManyInputs, model: str | None = None) -> list[int]: ...

    def count_tokens(self, input: EmbedInput, model: str | None = None) -> int | list[int]:
        """A string (or one token list) -> its token count; a list -> one per input.
        Before truncation, special tokens included."""
        return self._call(self.engine._count_any(input, model))

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Safe from any thread: calls blocked in others fail with `EngineClosedError`."""
        self._finalizer()

    def __enter__(self) -> EmbeddingEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _note_tokenize(started: float, tokens: int) -> None:
    """A traced tokenize call's one stage, and its end: what follows is encoding."""
    log = current()
    if log is not None:
        now = time.perf_counter()
        log.add("tokenize", started, now, inputs=1, tokens=tokens)
        log.finished = now
