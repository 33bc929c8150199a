"""A model that is loaded and ready: native handles, tokenizer, resolved settings, one lock.

Runs one packed batch of token ids through llama.cpp per call and returns per-token
outputs in input order. Packing is the scheduler's job; pooling the caller's. Owns the
native handles: they are freed only when no decode or tokenizer call holds a lease.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from embellama.config import InferenceEngine, ModelConfig, ModelKind, Normalization, Pooling
from embellama.errors import ConfigError, ModelFileError, ModelLoadError
from embellama.model.architectures import check_architecture, model_kind
from embellama.model.engines import resolve_engine
from embellama.model.fingerprint import gguf_fingerprint
from embellama.model.gguf import GGUFInfo, file_sha256, read_gguf_info
from embellama.model.lease import Leases
from embellama.model.memory import context_limit, context_shape, estimate_memory
from embellama.model.native import NativeModel, NativeParams, TokenIds
from embellama.model.onnx_bert import bert_graph_source, remove_cached_graph
from embellama.model.onnx_session import OnnxEncoder
from embellama.model.tokenizer import Tokenizer
from embellama.vectors import Matrix

__all__ = ["LoadedModel", "ModelInfo", "default_pooling"]


@dataclass(frozen=True)
class ModelInfo:
    """What a caller may want to know about a loaded model."""

    name: str
    aliases: tuple[str, ...]
    path: Path
    architecture: str
    dimensions: int
    context_length: int
    pooling: Pooling
    normalization: Normalization
    file_size: int
    # Hashing reads the whole file (seconds for a large model), so only callers that
    # ask for it pay; the server's endpoints never do.
    sha256: str | None
    vocab_size: int
    n_threads: int
    n_gpu_layers: int
    kind: ModelKind = ModelKind.EMBEDDING
    # Compared with its reference implementation by a test here (architectures.py).
    verified: bool = True
    # Upper bound of what one worker's contexts allocate beside the mapped weights
    # (model/memory.py), in bytes.
    memory_per_worker: int = 0
    # The file's content fingerprint (model/fingerprint.py): equal on every replica
    # that holds the same file, whatever its path.
    fingerprint: str | None = None
    # What runs the forward pass: "llama.cpp" or "onnxruntime" (model/engines.py).
    engine: str = InferenceEngine.LLAMA_CPP.value


def default_pooling(info: GGUFInfo) -> Pooling:
    """The header's pooling; without one, last token for causal models, else mean."""
    if info.pooling_type == "rank":
        raise ModelFileError(f"{info.path} is a reranker (pooling 'rank'), not an embedding model")
    if info.pooling_type in ("mean", "cls", "last"):
        return Pooling(info.pooling_type)
    return Pooling.LAST if info.causal_attention else Pooling.MEAN


# Poolings a bias-free, activation-free Dense layer commutes with: each is a linear map
# of the token outputs, so Dense-then-pool (llama.cpp, per token) equals pool-then-Dense
# (sentence-transformers). Max pooling is not linear.
_DENSE_EXACT = frozenset({Pooling.MEAN, Pooling.CLS, Pooling.LAST, Pooling.MEAN_SQRT, Pooling.NONE})


def _check_dense_commutes(header: GGUFInfo, pooling: Pooling) -> None:
    """Refuse a pooling that would give other vectors than the model's own pipeline."""
    if header.post_pooling_dense and pooling not in _DENSE_EXACT:
        raise ModelFileError(
            f"{header.path} has Dense layers after pooling (dense_2/dense_3); llama.cpp "
            f"applies them to every token, which equals the model's pool-then-Dense only "
            f"for mean, cls, last and mean_sqrt pooling, not {pooling.value!r}"
        )


def _fingerprint(header: GGUFInfo) -> str:
    try:
        return gguf_fingerprint(header)
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {header.path}: {exc.strerror}") from None


class LoadedModel:
    """One model's native state plus the settings that were resolved when it loaded."""

    def __init__(
        self,
        config: ModelConfig,
        *,
        inference: bool = True,
        expect_fingerprint: str | None = None,
        engine_cache: Path | None = None,
    ) -> None:
        """`inference=False` loads only the vocabulary: tokenize and validate, no decode.

        `engine_cache`: where the ONNX Runtime engine keeps the graphs it builds; None
        builds the graph in memory, for this process only.

        `expect_fingerprint`: the content fingerprint the file must have (a worker loading
        what its server loaded); any other file is refused before and after llama.cpp
        opens it, so a file swapped meanwhile is never served under the old identity.
        """
        self.config = config
        self.header = read_gguf_info(config.path)
        self.fingerprint = _fingerprint(self.header)
        self._check_fingerprint(expect_fingerprint)
        if self.header.tokenizer_model == "llama" and not self.header.has_byte_tokens:
            raise ModelFileError(
                f"{config.path} has a SentencePiece vocabulary without byte-fallback tokens; "
                "llama.cpp aborts the process on any character outside such a vocabulary"
            )
        self.limit = context_limit(config, self.header)
        self.kind = model_kind(self.header)
        if config.kind is not None and config.kind is not self.kind:
            raise ModelFileError(
                f"{config.path} is a {self.kind.value} model, but its configuration says "
                f"kind = {config.kind.value!r}"
            )
        self.verified = check_architecture(
            self.header, self.kind, allow_unverified=config.allow_unverified_architecture
        )
        self.pooling = self._pooling(config, self.header, self.kind)
        _check_dense_commutes(self.header, self.pooling)
        rank = self.kind is ModelKind.RERANK
        self.shape = context_shape(config, self.header, self.limit, rank=rank)
        self.engine = resolve_engine(config, self.header, self.kind)
        self.memory = estimate_memory(self.header, self.shape)
        if self.engine is InferenceEngine.ONNXRUNTIME:  # its own F32 weights, per worker
            self.memory = dataclasses.replace(self.memory, weights_copy=self.header.float32_bytes)
        # ONNX Runtime runs the forward pass: llama.cpp keeps only the vocabulary.
        native_inference = inference and self.engine is InferenceEngine.LLAMA_CPP
        self._native = NativeModel(
            NativeParams(
                path=str(config.path),
                n_ctx=self.shape.n_ctx,
                n_batch=self.shape.n_batch,
                repack_weights=not self.header.quantized,
                n_seq_max=config.batching.max_batch_sequences,
                n_threads=config.resolved_threads,
                n_gpu_layers=config.n_gpu_layers,
                vocab_only=not native_inference,
                causal=self.header.causal_attention,
                rank=rank,
            )
        )
        self._check_loaded_file()
        self._onnx = (
            self._onnx_encoder(engine_cache) if inference and not native_inference else None
        )
        self.leases = Leases(self.name)
        self.tokenizer = Tokenizer(self._native, self.limit, config.add_eos, self.leases)
        # A vocabulary-only load reports no output size; the header has it.
        self.dimensions = self._native.n_embd or self.header.n_embd
        self._lock = threading.Lock()
        self._closed = False

    def _check_fingerprint(self, expected: str | None) -> None:
        if expected is not None and self.fingerprint != expected:
            raise ModelFileError(
                f"{self.config.path} is not the file this model was loaded from: its content "
                f"fingerprint is {self.fingerprint}, expected {expected}. The file was replaced "
                "after the model loaded; reload the model to serve the new file"
            )

    def _check_loaded_file(self) -> None:
        """The file llama.cpp opened is the one fingerprinted: re-read it, now that it
        is open, and refuse a swap that happened in between."""
        try:
            again = _fingerprint(self.header)  # the header's bytes are part of it
        except ModelFileError:
            again = None
        if again != self.fingerprint:
            self._native.close()
            raise ModelFileError(f"{self.config.path} was replaced while it was being loaded")

    def prepare_engine(self, cache: Path | None) -> None:
        """Before workers start: build and cache what their engine loads (ONNX Runtime's
        graph), once, here. Every worker of a cold cache would otherwise build the same
        graph at once, each holding the weights about three times over meanwhile."""
        if self.engine is InferenceEngine.ONNXRUNTIME and cache is not None:
            bert_graph_source(self.config.path, self.fingerprint, cache)

    def _onnx_encoder(self, cache: Path | None) -> OnnxEncoder:
        """`cache` None: the graph is built in memory for this process. A file the
        graph cannot be built from fails the load (as llama.cpp's full load would), not a
        refusal: a worker refuses only a file other than the one the server checked, and
        is restarted then."""
        try:
            encoder = OnnxEncoder(
                self.config.path, self.fingerprint, cache, threads=self.config.resolved_threads
            )
        except ModelFileError as exc:
            self._native.close()
            raise ModelLoadError(str(exc)) from None
        except BaseException:
            self._native.close()
            raise
        # The builder read the file again: a file replaced meanwhile must not leave its
        # weights cached under the fingerprint of the one checked.
        try:
            self._check_loaded_file()
        except ModelFileError:
            encoder.close()
            if encoder.graph_path is not None:
                remove_cached_graph(encoder.graph_path)
            raise
        return encoder

    @staticmethod
    def _pooling(config: ModelConfig, header: GGUFInfo, kind: ModelKind) -> Pooling:
        if kind is ModelKind.EMBEDDING:
            return config.pooling or default_pooling(header)
        if config.pooling is not None:
            raise ConfigError(
                f"{config.path} is a reranker: it scores pairs with its classifier head, "
                f"so pooling={config.pooling.value!r} does not apply"
            )
        return Pooling.RANK

    @property
    def name(self) -> str:
        return self.config.resolved_name

    def info(self, *, with_sha256: bool = False) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            aliases=self.config.aliases,
            path=self.config.path,
            architecture=self.header.architecture,
            dimensions=self.dimensions,
            context_length=self.limit,
            pooling=self.pooling,
            normalization=self.config.normalization,
            file_size=self.header.file_size,
            sha256=file_sha256(self.config.path) if with_sha256 else None,
            vocab_size=self.tokenizer.vocab_size,
            n_threads=self.config.resolved_threads,
            n_gpu_layers=self.config.n_gpu_layers,
            kind=self.kind,
            verified=self.verified,
            memory_per_worker=self.memory.per_worker,
            fingerprint=self.fingerprint,
            engine=self.engine.value,
        )

    def decode(self, sequences: Sequence[TokenIds], *, threads: int | None = None) -> list[Matrix]:
        """Per-token outputs of one decode over `sequences`, in the order given; for a
        reranker, each sequence's classifier output `(1, n_outputs)` instead. `threads`
        overrides the configured thread count for this decode only.

        The lock serializes decodes on the one native context; the caller packed the
        batch to fit it (an input of up to the context length always fits alone).
        Raises `ModelUnloadingError` once the model is closing.
        """
        with self.leases.hold(), self._lock:
            if self._onnx is not None:  # its threads are fixed when its session starts
                return self._onnx.hidden_states(sequences)
            return self._native.decode(sequences, threads=threads)

    def close(self) -> None:
        """Refuse new calls, wait for those holding a lease (decodes, tokenizer calls on
        any thread), then free native memory."""
        self.leases.retire()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._native.close()
                if self._onnx is not None:
                    self._onnx.close()
