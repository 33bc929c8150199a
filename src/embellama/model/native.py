"""The only code that holds llama.cpp handles: load, tokenize, decode, free.

One `NativeModel` owns one model and one context. It is not thread-safe (llama.cpp
contexts are not); callers serialize `decode`. It returns raw per-token outputs and
knows nothing about pooling, normalization or batching policy.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import llama_cpp
import numpy as np
import numpy.typing as npt

from embellama.errors import InferenceError, ModelLoadError, TokenLimitError
from embellama.model.memory import FLASH_ATTENTION_TILE

__all__ = ["FLASH_ATTENTION_TILE", "NativeModel", "NativeParams", "TokenIds"]

TokenIds = npt.NDArray[np.int32]

_log = logging.getLogger("embellama.llama_cpp")
# ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continuation. Info is chatty
# (every metadata key at load), so it goes to debug too.
_LOG_LEVELS = {3: logging.WARNING, 4: logging.ERROR}
# ggml's CPU flash attention switches to a tiled kernel (F32 accumulation) at this many
# query rows in a micro-batch; below it, a per-row kernel accumulates in F16. The two
# differ by ~1e-4, so a short text would get a different vector alone than in a batch.
# Decodes smaller than the tile therefore run on a second context without flash
# attention (F32 throughout, which agrees with the tiled kernel to ~5e-5, and is also
# the fastest way to run one short text); larger decodes keep flash attention, which is
# twice as fast as plain attention on packed batches. Measured in bench/attention.md.
# (FLASH_ATTENTION_TILE lives in model/memory.py, which sizes contexts from it.)
_init_lock = threading.Lock()
_initialized = False
# Set while this thread loads a model or creates a context. Load-time warnings are about
# the file's metadata ("special_eos_id is not in special_eog_ids", "n_ctx_seq > n_ctx_train")
# and the user can do nothing about them, so they go to debug; errors stay errors.
_loading = threading.local()


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _forward_native_log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    """Route llama.cpp's chatter to Python logging instead of raw stderr."""
    message = text.decode("utf-8", errors="replace").rstrip()
    if not message:
        return
    python_level = _LOG_LEVELS.get(level, logging.DEBUG)
    # We ask for per-token outputs on purpose and pool in numpy; not worth a warning.
    expected = "default pooling_type is" in message
    if python_level == logging.WARNING and (expected or getattr(_loading, "active", False)):
        python_level = logging.DEBUG
    _log.log(python_level, "%s", message)


@contextmanager
def _load_time_logging() -> Iterator[None]:
    _loading.active = True
    try:
        yield
    finally:
        _loading.active = False


def _init_llama_cpp() -> None:
    global _initialized
    with _init_lock:
        if not _initialized:
            llama_cpp.llama_log_set(_forward_native_log, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _initialized = True


@dataclass(frozen=True)
class NativeParams:
    """What the context needs; sized by the caller so no input exceeds a batch."""

    path: str
    n_ctx: int
    n_seq_max: int
    n_threads: int
    n_gpu_layers: int
    # Causal models keep K/V in an F16 cache, where the two attention paths differ by
    # ~1e-3; they get one context with plain attention (batch invariant to ~1e-6).
    causal: bool = False
    # Load only the vocabulary and hyperparameters: enough to tokenize and validate,
    # in a process that must not pay for (or crash with) the weights.
    vocab_only: bool = False
    # A cross-encoder: contexts pool with llama.cpp's rank pooling (classifier head on
    # the first token), and decode returns one score row per sequence.
    rank: bool = False
    # Most tokens per llama_decode call (None: n_ctx). Causal models set it to the batch
    # budget: a longer input is decoded in several calls over the KV cache, so compute
    # and output buffers (n_batch rows of logits each) do not grow with the context.
    n_batch: int | None = None
    # Let llama.cpp repack weights into its extra CPU buffer types (see `_load_model`).
    repack_weights: bool = True

    @property
    def batch_tokens(self) -> int:
        return self.n_batch or self.n_ctx


class NativeModel:
    """One llama.cpp model plus one embedding context with per-token outputs."""

    def __init__(self, params: NativeParams) -> None:
        _init_llama_cpp()
        self.params = params
        with _load_time_logging():
            self._model = self._load_model(params)
            self._contexts: list[llama_cpp.llama_context_p] = []
            # The thread count each context (by id) was last set to (llama_set_n_threads).
            self._context_threads: dict[int, int] = {}
            if not params.vocab_only:
                self._create_contexts(params)
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_embd = int(llama_cpp.llama_model_n_embd_out(self._model))
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(self._model))
        self.n_cls_out = int(llama_cpp.llama_model_n_cls_out(self._model))
        self._batch = _NativeBatch(params.batch_tokens)
        self._closed = False

    def _create_contexts(self, params: NativeParams) -> None:
        try:
            self._large = self._create_context(
                params, params.n_ctx, params.batch_tokens, flash_attention=not params.causal
            )
            self._contexts.append(self._large)
            self._small = self._large
            if not params.causal:
                self._small = self._create_context(
                    params, FLASH_ATTENTION_TILE, FLASH_ATTENTION_TILE, flash_attention=False
                )
                self._contexts.append(self._small)
        except BaseException:
            self._free()
            raise

    @staticmethod
    def _load_model(params: NativeParams) -> llama_cpp.llama_model_p:
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = params.n_gpu_layers if params.n_gpu_layers >= 0 else 0x7FFFFFFF
        model_params.vocab_only = params.vocab_only
        # Extra CPU buffer types repack weights for faster kernels (MiniLM F16: 1.11x, 400
        # texts, measured ABBA). For quantized files they hold a private repacked copy in
        # every worker, and the AMX one segfaults in this llama.cpp at the first decode of
        # Gemma 3 270M Q4_K_M on CPUs with AMX: those stay memory-mapped and shared.
        model_params.use_extra_bufts = params.repack_weights
        model = llama_cpp.llama_model_load_from_file(params.path.encode("utf-8"), model_params)
        if not model:
            raise ModelLoadError(f"llama.cpp could not load the model: {params.path}")
        return cast(llama_cpp.llama_model_p, model)

    def _create_context(
        self, params: NativeParams, n_ctx: int, n_batch: int, *, flash_attention: bool
    ) -> llama_cpp.llama_context_p:
        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = n_ctx
        # Non-causal models need a whole sequence in one micro-batch, so both batch
        # sizes equal the context: an input never fails for being longer than a batch.
        # Causal ones take `n_batch` tokens per call (see `NativeParams.n_batch`).
        ctx_params.n_batch = n_batch
        ctx_params.n_ubatch = n_batch
        # Every sequence has at least one token; llama.cpp aborts if more are allowed.
        ctx_params.n_seq_max = min(params.n_seq_max, n_ctx)
        ctx_params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if flash_attention
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        ctx_params.n_threads = params.n_threads
        ctx_params.n_threads_batch = params.n_threads
        ctx_params.embeddings = True
        ctx_params.pooling_type = (
            llama_cpp.LLAMA_POOLING_TYPE_RANK if params.rank else llama_cpp.LLAMA_POOLING_TYPE_NONE
        )
        ctx_params.kv_unified = True
        # Sliding-window layers keep only the window (plus a micro-batch) per sequence,
        # not the whole context: Gemma 3's 32K context then holds 220 MiB of KV cache
        # instead of 576 MiB, which llama.cpp zeroes (so touches) at creation. Every
        # decode starts from a cleared cache, so nothing relies on older entries; the
        # vectors are bit-identical to a full-size cache (measured on Gemma 3 270M).
        ctx_params.swa_full = False
        ctx = llama_cpp.llama_init_from_model(self._model, ctx_params)
        if not ctx:
            raise ModelLoadError(f"llama.cpp could not create a context for: {params.path}")
        return cast(llama_cpp.llama_context_p, ctx)

    # -- vocabulary ---------------------------------------------------------------

    @property
    def adds_leading_special(self) -> bool:
        return bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))

    @property
    def eos_token(self) -> int:
        return int(llama_cpp.llama_vocab_eos(self._vocab))

    def pair_specials(self) -> tuple[list[int], list[int], list[int]]:
        """Special ids around a query-document pair, as llama.cpp's server builds it:
        `[BOS] query [EOS] [SEP] document [EOS]`, each part present only if the
        vocabulary adds it (BERT: [CLS] q [SEP] d [SEP]; XLM-R: <s> q </s></s> d </s>)."""
        vocab = self._vocab
        bos = (
            [int(llama_cpp.llama_vocab_bos(vocab))]
            if llama_cpp.llama_vocab_get_add_bos(vocab)
            else []
        )
        eos = (
            [int(llama_cpp.llama_vocab_eos(vocab))]
            if llama_cpp.llama_vocab_get_add_eos(vocab)
            else []
        )
        sep = (
            [int(llama_cpp.llama_vocab_sep(vocab))]
            if llama_cpp.llama_vocab_get_add_sep(vocab)
            else []
        )
        return bos, eos + sep, eos

    @property
    def adds_trailing_special(self) -> bool:
        vocab = self._vocab
        return bool(
            llama_cpp.llama_vocab_get_add_eos(vocab) or llama_cpp.llama_vocab_get_add_sep(vocab)
        )

    def tokenize(
        self,
        text: bytes,
        *,
        add_special: bool = True,
        parse_special: bool = False,
        max_tokens: int | None = None,
    ) -> TokenIds:
        """Tokenize UTF-8 bytes. By default special-token syntax in user text ("[SEP]")
        stays plain text, so a user cannot forge the model's control tokens.

        `max_tokens`: the buffer never grows past it; more tokens raise TokenLimitError.
        """
        capacity = len(text) + 16 if max_tokens is None else min(len(text) + 16, max_tokens)
        while True:
            buffer = (llama_cpp.llama_token * capacity)()
            count = llama_cpp.llama_tokenize(
                self._vocab, text, len(text), buffer, capacity, add_special, parse_special
            )
            if count >= 0:
                # A view, not `buffer[:count]`: that builds a Python int per token while
                # holding the GIL (tens of ms for a multi-MB text, stalling the loop).
                return np.ctypeslib.as_array(buffer)[:count].astype(np.int32)
            if max_tokens is not None and -count > max_tokens:
                raise TokenLimitError(n_tokens=-count, limit=max_tokens)
            capacity = -count

    def piece(self, token: int) -> bytes:
        """The bytes one token stands for, special tokens rendered (may be partial UTF-8)."""
        capacity = 32
        while True:
            buffer = ctypes.create_string_buffer(capacity)
            count = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, capacity, 0, True)
            if count >= 0:
                return buffer.raw[:count]
            capacity = -count

    @property
    def is_wordpiece(self) -> bool:
        """WordPiece (BERT) renders every word with a leading space, the first too."""
        return bool(llama_cpp.llama_vocab_type(self._vocab) == llama_cpp.LLAMA_VOCAB_TYPE_WPM)

    def detokenize(self, tokens: Sequence[int] | TokenIds, *, keep_special: bool = False) -> str:
        """The text of `tokens`; special tokens render as nothing, or as their text
        ("[CLS]") with `keep_special`."""
        # One copy into int32 and a pointer to it: no Python int per token.
        array = np.ascontiguousarray(tokens, dtype=np.int32)
        ids = array.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token))
        capacity = 8 * len(array) + 16
        while True:
            buffer = ctypes.create_string_buffer(capacity)
            count = llama_cpp.llama_detokenize(
                self._vocab, ids, len(array), buffer, capacity, not keep_special, keep_special
            )
            if count >= 0:
                return ctypes.string_at(buffer, count).decode("utf-8", errors="replace")
            capacity = -count

    # -- inference ----------------------------------------------------------------

    def decode(
        self, sequences: Sequence[TokenIds], *, threads: int | None = None
    ) -> list[npt.NDArray[np.float32]]:
        """Run one decode over several sequences; return each one's per-token outputs.

        Token ids must already be validated against the vocabulary: llama.cpp aborts
        the process on an out-of-range id instead of returning an error. `threads`
        (default: the context's own) changes only how the work is split: ggml computes
        every output element on one thread, so the vectors are bit-identical.
        """
        if not self._contexts:
            raise InferenceError("this model was loaded for tokenization only")
        flat = _FlatBatch.of(sequences)
        if flat.n_tokens > self._batch.capacity and not self.params.causal:
            raise InferenceError(
                f"batch of {flat.n_tokens} tokens exceeds capacity {self._batch.capacity}"
            )
        ctx = self._small if flat.n_tokens < FLASH_ATTENTION_TILE else self._large
        self._set_threads(ctx, threads or self.params.n_threads)
        memory = llama_cpp.llama_get_memory(ctx)
        if memory:
            llama_cpp.llama_memory_clear(memory, True)
        if self.params.rank:
            self._decode_range(ctx, flat, 0, flat.n_tokens)
            return [self._scores(ctx, seq) for seq in range(len(sequences))]
        # A causal model's KV cache carries each call's keys and values into the next,
        # so a batch over `n_batch` tokens runs as consecutive calls, as one would.
        step = self._batch.capacity
        outputs = np.concatenate(
            [
                self._decode_range(ctx, flat, start, min(start + step, flat.n_tokens))
                for start in range(0, flat.n_tokens, step)
            ]
        )
        bounds = np.cumsum([len(seq) for seq in sequences])[:-1]
        return np.split(outputs, bounds)

    def _decode_range(
        self, ctx: llama_cpp.llama_context_p, flat: _FlatBatch, start: int, stop: int
    ) -> npt.NDArray[np.float32]:
        """One llama_decode of tokens `start:stop`; their per-token outputs (a copy)."""
        n_tokens = self._batch.fill(flat, start, stop)
        status = llama_cpp.llama_decode(ctx, self._batch.struct)
        if status != 0:
            raise InferenceError(f"llama_decode failed with status {status}")
        if self.params.rank:
            return np.empty((0, self.n_embd), np.float32)
        pointer = llama_cpp.llama_get_embeddings(ctx)
        if not pointer:
            raise InferenceError("llama.cpp returned no embeddings")
        return np.ctypeslib.as_array(pointer, shape=(n_tokens, self.n_embd)).copy()

    def _set_threads(self, ctx: llama_cpp.llama_context_p, threads: int) -> None:
        if self._context_threads.get(id(ctx), self.params.n_threads) != threads:
            llama_cpp.llama_set_n_threads(ctx, threads, threads)
            self._context_threads[id(ctx)] = threads

    def _scores(self, ctx: llama_cpp.llama_context_p, seq: int) -> npt.NDArray[np.float32]:
        pointer = llama_cpp.llama_get_embeddings_seq(ctx, seq)
        if not pointer:
            raise InferenceError("llama.cpp returned no score for a sequence")
        return np.ctypeslib.as_array(pointer, shape=(1, self.n_cls_out)).copy()

    def close(self) -> None:
        """Free native memory now rather than whenever the garbage collector runs."""
        if self._closed:
            return
        self._closed = True
        self._free()

    def _free(self) -> None:
        for ctx in self._contexts:
            llama_cpp.llama_free(ctx)
        self._contexts.clear()
        llama_cpp.llama_model_free(self._model)

    def __del__(self) -> None:
        if hasattr(self, "_closed"):
            self.close()


class _NativeBatch:
    """A `llama_batch` whose arrays are numpy buffers, filled without Python loops."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.tokens = np.zeros(capacity, dtype=np.int32)
        self.positions = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq_ids = np.zeros(capacity, dtype=np.int32)
        # seq_id is int32** in C: one pointer per token, each into `seq_ids`.
        self.seq_id_ptrs = (self.seq_ids.ctypes.data + 4 * np.arange(capacity)).astype(np.uint64)
        self.outputs = np.ones(capacity, dtype=np.int8)
        self.struct = llama_cpp.llama_batch()
        self.struct.token = _pointer(self.tokens, llama_cpp.llama_token)
        self.struct.pos = _pointer(self.positions, llama_cpp.llama_pos)
        self.struct.n_seq_id = _pointer(self.n_seq_id, ctypes.c_int32)
        self.struct.seq_id = _pointer(self.seq_id_ptrs, ctypes.POINTER(llama_cpp.llama_seq_id))
        self.struct.logits = _pointer(self.outputs, ctypes.c_int8)

    def fill(self, flat: _FlatBatch, start: int, stop: int) -> int:
        total = stop - start
        if total > self.capacity:
            raise InferenceError(f"batch of {total} tokens exceeds capacity {self.capacity}")
        self.tokens[:total] = flat.tokens[start:stop]
        self.positions[:total] = flat.positions[start:stop]
        self.seq_ids[:total] = flat.seq_ids[start:stop]
        self.struct.n_tokens = total
        return total


@dataclass(frozen=True)
class _FlatBatch:
    """Every token of a batch with its position and sequence id, in decode order."""

    tokens: npt.NDArray[np.int32]
    positions: npt.NDArray[np.int32]
    seq_ids: npt.NDArray[np.int32]

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @classmethod
    def of(cls, sequences: Sequence[TokenIds]) -> _FlatBatch:
        lengths = np.fromiter((len(seq) for seq in sequences), dtype=np.int64, count=len(sequences))
        total = int(lengths.sum())
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        return cls(
            tokens=np.concatenate(sequences).astype(np.int32, copy=False),
            positions=(np.arange(total) - starts).astype(np.int32),
            seq_ids=np.repeat(np.arange(len(sequences), dtype=np.int32), lengths),
        )


def _pointer(array: npt.NDArray[Any], ctype: Any) -> Any:
    """A C pointer of `ctype` into `array`'s buffer; the array must outlive its use."""
    return ctypes.cast(array.ctypes.data, ctypes.POINTER(ctype))
