"""The only code that holds an ONNX Runtime session: run a BERT graph over token ids.

`OnnxEncoder` is the ONNX Runtime twin of `NativeModel.decode`: it takes sequences of
token ids (tokenized by llama.cpp, so the ids are the same) and returns each one's
per-token hidden states. It packs its own batches: sequences sorted by length and cut
into padded buckets of at most `bucket_tokens` padded tokens, where no row is padded by
more than `PADDING_PER_ROW` tokens, so a short text is not padded to a long one's
length. Knows nothing of pooling, normalization or scheduling.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embellama.errors import InferenceError, ModelLoadError
from embellama.model.onnx_bert import bert_graph_source, remove_cached_graph

_log = logging.getLogger("embellama.model")

__all__ = ["DEFAULT_BUCKET_TOKENS", "PADDING_PER_ROW", "OnnxEncoder", "buckets"]

# Padded tokens per ONNX Runtime run. Buckets this size keep the attention matrices in
# cache and let length sorting cut padding; the figure is a starting point for
# bench/engines.py, not a measurement.
DEFAULT_BUCKET_TOKENS = 1024
# Most padding a row takes to share a run rather than start one. A run costs about as
# much as 5 tokens of MiniLM on top of its tokens, so a row padded by more is cheaper
# alone. The server's batches of ~5 short texts of mixed lengths (2 threads): 344
# texts/s at 4, 342 at 8, 325 at 0, 273 with no limit; one call of 800 texts is the
# same at every limit (201-205). Measured in-process on the 2-core Intel machine
# (bench/notes.md).
PADDING_PER_ROW = 4

TokenIds = npt.NDArray[np.int32]
Hidden = npt.NDArray[np.float32]


def buckets(
    lengths: Sequence[int], bucket_tokens: int, padding_per_row: int = PADDING_PER_ROW
) -> list[list[int]]:
    """Indices into `lengths`, longest first, cut so that each bucket's rows times its
    longest length stay within `bucket_tokens` (a longer sequence gets a bucket alone)
    and no row is shorter than its bucket's longest by more than `padding_per_row`."""
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    result: list[list[int]] = []
    for index in order:
        if result:
            width = lengths[result[-1][0]]
            fits = (len(result[-1]) + 1) * width <= bucket_tokens
            if fits and width - lengths[index] <= padding_per_row:
                result[-1].append(index)
                continue
        result.append([index])
    return result


class OnnxEncoder:
    """One ONNX Runtime session over the graph built from one BERT GGUF."""

    def __init__(
        self,
        path: str | Path,
        fingerprint: str,
        cache_directory: Path | None,
        *,
        threads: int,
        bucket_tokens: int = DEFAULT_BUCKET_TOKENS,
    ) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise ModelLoadError(
                "the onnxruntime engine needs onnxruntime: pip install 'onnxruntime==1.32.*'"
            ) from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        graph = bert_graph_source(path, fingerprint, cache_directory)
        try:
            self._session: Any = _session(onnxruntime, graph, options)
        except Exception as exc:  # onnxruntime's own error types (Fail, InvalidGraph, ...)
            if not isinstance(graph, Path):
                raise ModelLoadError(
                    f"{path}: ONNX Runtime could not load its graph: {exc}"
                ) from None
            # A cached graph whose weights are gone or damaged (evicted by another process
            # between the two reads, a partial copy of the cache) is built again, once; in
            # memory where it cannot be removed (a read-only cache).
            _log.warning(
                "the cached ONNX graph %s did not load (%s); building it again", graph, exc
            )
            remove_cached_graph(graph)
            directory = None if graph.exists() else cache_directory
            graph = bert_graph_source(path, fingerprint, directory)
            try:
                self._session = _session(onnxruntime, graph, options)
            except Exception as again:
                raise ModelLoadError(
                    f"{path}: ONNX Runtime could not load its graph: {again}"
                ) from None
        self.graph_path = graph if isinstance(graph, Path) else None  # None: in memory
        self.threads = threads
        self.bucket_tokens = bucket_tokens

    def hidden_states(self, sequences: Sequence[TokenIds]) -> list[Hidden]:
        """Each sequence's `(n_tokens, hidden)` outputs, in the order given."""
        if self._session is None:
            raise InferenceError("this ONNX Runtime session was closed")
        outputs: list[Hidden | None] = [None] * len(sequences)
        for bucket in buckets([len(sequence) for sequence in sequences], self.bucket_tokens):
            hidden = self._run([sequences[index] for index in bucket])
            for row, index in enumerate(bucket):
                outputs[index] = hidden[row, : len(sequences[index])].copy()
        return [output for output in outputs if output is not None]

    def _run(self, rows: list[TokenIds]) -> Hidden:
        width = max(len(row) for row in rows)
        ids = np.zeros((len(rows), width), np.int64)
        mask = np.zeros((len(rows), width), np.int64)
        for position, row in enumerate(rows):
            ids[position, : len(row)] = row
            mask[position, : len(row)] = 1
        result = self._session.run(["hidden_states"], {"input_ids": ids, "attention_mask": mask})
        return np.asarray(result[0], dtype=np.float32)

    def close(self) -> None:
        self._session = None


def _session(onnxruntime: Any, graph: Path | bytes, options: Any) -> Any:
    source = graph if isinstance(graph, bytes) else str(graph)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
