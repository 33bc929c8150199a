"""Build an ONNX graph of a BERT-architecture GGUF from its own tensors, and cache it.

llama.cpp's `bert` architecture (BERT, DistilBERT, XLM-RoBERTa after conversion) is a
post-norm encoder whose tensors follow llama.cpp's names; `nomic-bert` is the same
encoder with rotary positions, a fused QKV projection and a SwiGLU feed-forward. The graph takes `input_ids`
and `attention_mask` (int64, `[batch, seq]`) and returns every token's hidden state
after the last layer (`[batch, seq, hidden]`); pooling and normalization stay in the
pipeline. F16/BF16 weights are widened to F32 here, once; quantized files are refused.
This module never runs the graph and imports no ONNX Runtime.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embellama.errors import ModelFileError

_log = logging.getLogger("embellama.model")

__all__ = [
    "BUILDER_VERSION",
    "BertShape",
    "bert_graph_source",
    "build_bert_graph",
    "cached_bert_graph",
    "remove_cached_graph",
    "weights_files",
]

# Part of the cache file's name: a change to the graph must not reuse an older build.
BUILDER_VERSION = 3
# The opset the graph is written for (LayerNormalization needs 17).
OPSET = 17
# Added to masked (padding) keys' scores: exp() of it underflows to exactly 0 in F32,
# so a padded row attends to its real tokens only, as it would alone.
_MASKED = -1.0e9
_FLOAT_TYPES = {0: "F32", 1: "F16", 30: "BF16"}  # ggml type ids this builder widens
# GGUF architectures this builder writes: BERT, DistilBERT and XLM-R convert to `bert`.
_ARCHITECTURES = ("bert", "nomic-bert")

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class BertShape:
    """The hyperparameters the graph needs, from the GGUF's `bert.*` metadata."""

    hidden: int
    layers: int
    heads: int
    epsilon: float
    context: int
    architecture: str = "bert"
    # NomicBERT: rotary positions over the whole head (NeoX halves), at this base.
    rope_base: float | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def build_bert_graph(path: str | Path) -> Any:
    """The `onnx.ModelProto` of the BERT GGUF at `path` (weights embedded, F32)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    shape = _shape(reader, path)
    tensors = {tensor.name: tensor for tensor in reader.tensors}

    def weight(name: str) -> Array:
        if name not in tensors:
            raise ModelFileError(f"{path}: no tensor {name!r} for the ONNX Runtime engine")
        tensor = tensors[name]
        if int(tensor.tensor_type) not in _FLOAT_TYPES:
            raise ModelFileError(
                f"{path}: tensor {name} is {tensor.tensor_type.name}; the ONNX Runtime "
                "engine runs F32, F16 and BF16 files only"
            )
        data = _widen(tensor.data, int(tensor.tensor_type))
        expected = _expected_shape(name, shape)
        if len(expected) != data.ndim or any(
            want is not None and want != got
            for want, got in zip(expected, data.shape, strict=False)
        ):
            wanted = "x".join("*" if want is None else str(want) for want in expected)
            raise ModelFileError(
                f"{path}: tensor {name} has wrong shape {'x'.join(map(str, data.shape))}, "
                f"expected {wanted} for a {shape.hidden}-wide model"
            )
        return data

    graph = _NomicGraph if shape.architecture == "nomic-bert" else _Graph
    return graph(shape, weight, has=tensors.__contains__).model()


def _expected_shape(name: str, shape: BertShape) -> tuple[int | None, ...]:
    """Rows x columns (numpy order) a tensor must have for the declared width: a file
    whose header and tensors disagree is refused here, naming the tensor, not by ONNX
    Runtime's shape inference deep in the session."""
    hidden = shape.hidden
    leaf = name.rsplit(".", 2)
    kind, part = (leaf[-2], leaf[-1]) if len(leaf) >= 2 else (name, "")
    if kind in ("ffn_up", "ffn_gate"):
        return (None, hidden) if part == "weight" else (None,)
    if kind == "attn_qkv":
        return (3 * hidden, hidden) if part == "weight" else (3 * hidden,)
    if kind == "ffn_down":
        return (hidden, None) if part == "weight" else (hidden,)
    if kind == "position_embd" and part == "weight":
        # One row per position of the declared context, as llama.cpp requires: fewer
        # would fail only at the first input longer than the table, as a server error.
        return (shape.context, hidden)
    if kind in ("token_embd", "token_types") and part == "weight":
        return (None, hidden)
    if part == "weight" and kind in ("attn_q", "attn_k", "attn_v", "attn_output"):
        return (hidden, hidden)
    return (hidden,)  # biases and layer norms


def bert_graph_source(path: str | Path, fingerprint: str, directory: Path | None) -> Path | bytes:
    """What ONNX Runtime loads: the cached file under `directory`, or, with no directory
    or one this process cannot write (a read-only home, a full disk, a container's user
    without rights to it), the graph built in memory for this process, with a warning."""
    if directory is not None:
        try:
            return cached_bert_graph(path, fingerprint, directory)
        except OSError as exc:
            if exc.errno not in _UNWRITABLE:
                raise
            _log.warning(
                "cannot keep the ONNX graph of %s in %s (%s); built in memory for this "
                "process (set EMBELLAMA_HOME to a writable directory to build it once)",
                path,
                directory,
                exc.strerror or exc,
            )
    serialized: bytes = build_bert_graph(path).SerializeToString()
    return serialized


_UNWRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})


def cached_bert_graph(path: str | Path, fingerprint: str, directory: Path) -> Path:
    """The built graph's file under `directory`, built and written atomically if absent.

    Keyed by the GGUF's content fingerprint and the builder's version: another file (or
    a rebuilt graph) never reuses a stale build; a crash mid-write leaves no partial file.
    Its weights sit beside it in a file of their own (see `_write_graph`); a graph whose
    weights are missing or damaged fails ONNX Runtime's load, and `OnnxEncoder` then
    removes it and builds it again.
    """

    target = directory / f"{fingerprint}-bert-v{BUILDER_VERSION}.onnx"
    if target.is_file():
        try:
            os.utime(target)  # recently used: the last one evicted
            return target
        except FileNotFoundError:
            pass  # evicted by another process just now: build it again
        except OSError:
            return target  # a read-only cache holding the graph serves it as it is
    model = build_bert_graph(path)
    directory.mkdir(parents=True, exist_ok=True)
    _write_graph(model, target)
    for older in directory.glob(f"{fingerprint}-bert-v*.onnx"):
        if older != target:  # an earlier builder's graph of the same file: never used again
            remove_cached_graph(older)
    _evict(directory, keep=target)
    return target


def weights_files(graph: Path) -> list[Path]:
    """Every weights file written for `graph`: the one it names, and any of a build it
    replaced (two processes that built at once) until the graph itself is removed."""
    return sorted(graph.parent.glob(f"{graph.name}.*.data"))


def remove_cached_graph(graph: Path) -> None:
    """The graph first, then its weights: a graph file never names missing weights
    for long. Failures to remove are logged, never raised: the cache is an optimisation."""
    for part in (graph, *weights_files(graph)):
        _remove(part)


def _remove(part: Path) -> None:
    try:
        part.unlink(missing_ok=True)
    except OSError as exc:  # another user's file in a shared directory, a mapped file
        _log.warning("cannot remove %s from the ONNX graph cache: %s", part, exc)


def _write_graph(model: Any, target: Path) -> None:
    """Writes every weight of at least `_MAPPED_BYTES` to a weights file of this build's
    own name (`<graph>.<random>.data`) at offsets aligned to `_ALIGNMENT`, and then the
    graph naming that file to `target`.

    ONNX Runtime memory-maps such external weights on the CPU instead of copying them
    into each session, so the server's workers share one copy in the page cache (PSS,
    bench/engines_server.md) and pages no input touches (most of the token-embedding
    table) are never read. Both are written to temporaries and renamed, the weights
    first: the graph's rename is the one commit, and since every build names its own
    weights file, a graph is never paired with another build's weights. A session
    already open keeps the inodes it mapped, so neither a rename nor an eviction changes
    what it reads.
    """
    from onnx import TensorProto

    directory = target.parent
    weights = directory / f"{target.name}.{secrets.token_hex(6)}.data"
    temporaries: list[str] = []
    try:
        data_handle, data_temporary = tempfile.mkstemp(prefix=".building-", dir=directory)
        temporaries.append(data_temporary)
        with os.fdopen(data_handle, "wb") as data:
            offset = 0
            for tensor in model.graph.initializer:
                raw = tensor.raw_data
                if len(raw) < _MAPPED_BYTES:
                    continue  # small: kept inside the graph
                padding = -offset % _ALIGNMENT
                data.write(b"\0" * padding)
                offset += padding
                data.write(raw)
                del tensor.external_data[:]
                for key, value in (
                    ("location", weights.name),
                    ("offset", str(offset)),
                    ("length", str(len(raw))),
                ):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, value
                tensor.data_location = TensorProto.EXTERNAL
                tensor.ClearField("raw_data")
                offset += len(raw)
            data.flush()
            os.fsync(data.fileno())
        graph_handle, graph_temporary = tempfile.mkstemp(prefix=".building-", dir=directory)
        temporaries.append(graph_temporary)
        with os.fdopen(graph_handle, "wb") as graph:
            graph.write(model.SerializeToString())
            graph.flush()
            os.fsync(graph.fileno())
        os.replace(data_temporary, weights)
        os.replace(graph_temporary, target)
    except BaseException:
        for temporary in temporaries:
            Path(temporary).unlink(missing_ok=True)
        weights.unlink(missing_ok=True)
        raise


# Built graphs kept: each is the model widened to F32 (90 MB for MiniLM), and every other
# file (a copy with edited metadata, a new version) has another fingerprint.
KEPT_GRAPHS = 8
# ONNX Runtime documents mapping external weights at offsets that are multiples of the
# allocation granularity (4 KiB on Linux, 64 KiB on Windows; 1.32 was seen mapping
# unaligned ones too); weights under 64 KiB (biases, norms) stay inside the graph.
_ALIGNMENT = 1 << 16
_MAPPED_BYTES = 1 << 16
# A temporary or a weights file with no graph this old is no build in progress.
_ORPHAN_SECONDS = 3600


def _evict(directory: Path, keep: Path) -> None:
    """All but the KEPT_GRAPHS most recently used graphs go, each with its weights."""
    graphs = sorted(directory.glob("*-bert-v*.onnx"), key=_used, reverse=True)
    for stale in graphs[KEPT_GRAPHS:]:
        if stale != keep:
            remove_cached_graph(stale)
    # A build killed mid-write (SIGKILL, the OOM killer) leaves its temporaries; one
    # killed between its two renames leaves weights that no graph file names.
    for orphan in [*directory.glob(".building-*"), *directory.glob("*-bert-v*.onnx.*.data")]:
        building = orphan.name.startswith(".building-")
        graph = orphan.with_name(orphan.name.split(".onnx.", 1)[0] + ".onnx")
        if (building or not graph.exists()) and time.time() - _used(orphan) > _ORPHAN_SECONDS:
            _remove(orphan)


def _used(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _shape(reader: Any, path: str | Path) -> BertShape:
    def field(key: str) -> Any:
        entry = reader.fields.get(key)
        if entry is None:
            raise ModelFileError(f"{path}: no {key} in the header")
        return entry.contents()

    architecture = field("general.architecture")
    if architecture not in _ARCHITECTURES:
        raise ModelFileError(
            f"{path}: the ONNX Runtime engine runs the 'bert' and 'nomic-bert' architectures only"
        )
    shape = BertShape(
        hidden=int(field(f"{architecture}.embedding_length")),
        layers=int(field(f"{architecture}.block_count")),
        heads=int(field(f"{architecture}.attention.head_count")),
        epsilon=float(field(f"{architecture}.attention.layer_norm_epsilon")),
        context=int(field(f"{architecture}.context_length")),
        architecture=architecture,
        rope_base=(
            float(field(f"{architecture}.rope.freq_base")) if architecture == "nomic-bert" else None
        ),
    )
    if shape.heads <= 0 or shape.hidden % shape.heads:
        raise ModelFileError(f"{path}: {shape.hidden} wide with {shape.heads} heads")
    rotary = reader.fields.get(f"{architecture}.rope.dimension_count")
    if rotary is not None and int(rotary.contents()) != shape.head_dim:
        raise ModelFileError(
            f"{path}: rotary positions over {int(rotary.contents())} of {shape.head_dim} "
            "head dimensions; the ONNX Runtime engine rotates whole heads only"
        )
    return shape


def _widen(data: npt.NDArray[Any], type_id: int) -> Array:
    if _FLOAT_TYPES[type_id] == "BF16":  # stored as raw 16-bit words: the high half of F32
        words = np.ascontiguousarray(data).view(np.uint16).astype(np.uint32) << 16
        return words.view(np.float32)
    return np.ascontiguousarray(data, dtype=np.float32)


class _Graph:
    """Writes the nodes and initializers of one encoder, layer by layer."""

    def __init__(
        self, shape: BertShape, weight: Callable[[str], Array], has: Callable[[str], bool]
    ) -> None:
        self.shape, self.weight, self.has = shape, weight, has
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def model(self) -> Any:
        from onnx import TensorProto, helper

        hidden = self._layers(self._embeddings("input_ids"), self._mask_bias("attention_mask"))
        self.nodes.append(helper.make_node("Identity", [hidden], ["hidden_states"]))
        graph = helper.make_graph(
            self.nodes,
            "embellama-bert",
            [
                helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
                helper.make_tensor_value_info(
                    "attention_mask", TensorProto.INT64, ["batch", "seq"]
                ),
            ],
            [
                helper.make_tensor_value_info(
                    "hidden_states", TensorProto.FLOAT, ["batch", "seq", self.shape.hidden]
                )
            ],
            self.initializers,
        )
        return helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="embellama"
        )

    # -- plumbing -----------------------------------------------------------------

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def _const(self, name: str, value: npt.NDArray[Any]) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def _op(self, op: str, inputs: list[str], **attributes: Any) -> str:
        from onnx import helper

        output = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def _linear(self, x: str, prefix: str) -> str:
        """`x @ W.T + b` for the GGUF's `[out, in]` weight, transposed once here."""
        weight = self._const(f"{prefix}.weight.T", self.weight(f"{prefix}.weight").T.copy())
        product = self._op("MatMul", [x, weight])
        if not self.has(f"{prefix}.bias"):
            return product
        return self._op(
            "Add", [product, self._const(f"{prefix}.bias", self.weight(f"{prefix}.bias"))]
        )

    def _norm(self, x: str, prefix: str) -> str:
        scale = self._const(f"{prefix}.weight", self.weight(f"{prefix}.weight"))
        bias = self._const(f"{prefix}.bias", self.weight(f"{prefix}.bias"))
        return self._op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=self.shape.epsilon)

    # -- the encoder --------------------------------------------------------------

    def _embeddings(self, ids: str) -> str:
        """Token + position (+ token type 0) embeddings, then their layer norm."""
        tokens = self._op(
            "Gather", [self._const("token_embd", self.weight("token_embd.weight")), ids]
        )
        positions = self._const("position_embd", self.weight("position_embd.weight"))
        seq = self._op("Shape", [ids], start=1, end=2)
        zero = self._const("zero", np.zeros(1, np.int64))
        summed = self._op("Add", [tokens, self._op("Slice", [positions, zero, seq, zero])])
        if self.has("token_types.weight"):  # every token is type 0, as in llama.cpp
            types = self.weight("token_types.weight")[0]
            summed = self._op("Add", [summed, self._const("token_type_0", types)])
        return self._norm(summed, "token_embd_norm")

    def _mask_bias(self, mask: str) -> str:
        """`[batch, 1, 1, seq]`: 0 where a key is a real token, `_MASKED` where padding."""
        as_float = self._op("Cast", [mask], to=1)  # TensorProto.FLOAT
        one = self._const("one", np.ones((), np.float32))
        padding = self._op("Sub", [one, as_float])
        scaled = self._op("Mul", [padding, self._const("masked", np.array(_MASKED, np.float32))])
        return self._op("Unsqueeze", [scaled, self._const("axes_1_2", np.array([1, 2], np.int64))])

    def _layers(self, x: str, mask_bias: str) -> str:
        heads = self._const(
            "head_shape", np.array([0, 0, self.shape.heads, self.shape.head_dim], np.int64)
        )
        merged = self._const("merged_shape", np.array([0, 0, self.shape.hidden], np.int64))
        for layer in range(self.shape.layers):
            x = self._layer(x, f"blk.{layer}", mask_bias, heads, merged)
        return x

    def _layer(self, x: str, prefix: str, mask_bias: str, heads: str, merged: str) -> str:
        attended = self._attention(x, prefix, mask_bias, heads, merged)
        x = self._norm(self._op("Add", [x, attended]), f"{prefix}.attn_output_norm")
        down = self._linear(self._ffn(x, prefix), f"{prefix}.ffn_down")
        return self._norm(self._op("Add", [x, down]), f"{prefix}.layer_output_norm")

    def _ffn(self, x: str, prefix: str) -> str:
        """What `ffn_down` projects back: BERT's GELU of `ffn_up`."""
        return self._gelu(self._linear(x, f"{prefix}.ffn_up"))

    def _projections(self, x: str, prefix: str, heads: str) -> tuple[str, str, str]:
        """Query and value `[batch, heads, seq, head_dim]`, key `[batch, heads, head_dim,
        seq]` (transposed for the scores' MatMul)."""

        def split(name: str, perm: list[int]) -> str:
            projected = self._linear(x, f"{prefix}.{name}")
            return self._op("Transpose", [self._op("Reshape", [projected, heads])], perm=perm)

        return (
            split("attn_q", [0, 2, 1, 3]),
            split("attn_k", [0, 2, 3, 1]),
            split("attn_v", [0, 2, 1, 3]),
        )

    def _attention(self, x: str, prefix: str, mask_bias: str, heads: str, merged: str) -> str:
        query, key, value = self._projections(x, prefix, heads)
        scale = self._const(
            self._name("scale"), np.array(1.0 / math.sqrt(self.shape.head_dim), np.float32)
        )
        scores = self._op("Mul", [self._op("MatMul", [query, key]), scale])
        weights = self._op("Softmax", [self._op("Add", [scores, mask_bias])], axis=-1)
        context = self._op("Transpose", [self._op("MatMul", [weights, value])], perm=[0, 2, 1, 3])
        return self._linear(self._op("Reshape", [context, merged]), f"{prefix}.attn_output")

    def _gelu(self, x: str) -> str:
        """BERT's exact GELU, `x * (1 + erf(x / sqrt 2)) / 2` (ORT fuses it into Gelu)."""
        root2 = self._const(self._name("sqrt2"), np.array(math.sqrt(2.0), np.float32))
        one = self._const(self._name("one"), np.array(1.0, np.float32))
        half = self._const(self._name("half"), np.array(0.5, np.float32))
        erf = self._op("Erf", [self._op("Div", [x, root2])])
        return self._op("Mul", [self._op("Mul", [x, self._op("Add", [erf, one])]), half])


class _NomicGraph(_Graph):
    """NomicBERT (nomic-embed-text): BERT's post-norm layers with no position table,
    one fused QKV projection, rotary positions on queries and keys (NeoX halves, as
    llama.cpp's `nomic-bert` and transformers' NomicBertModel apply them) and a SwiGLU
    feed-forward, `ffn_down(silu(ffn_gate(x)) * ffn_up(x))`."""

    def _embeddings(self, ids: str) -> str:
        tokens = self._op(
            "Gather", [self._const("token_embd", self.weight("token_embd.weight")), ids]
        )
        if self.has("token_types.weight"):  # every token is type 0, as in llama.cpp
            types = self.weight("token_types.weight")[0]
            tokens = self._op("Add", [tokens, self._const("token_type_0", types)])
        self._rotary_tables()
        return self._norm(tokens, "token_embd_norm")

    def _rotary_tables(self) -> None:
        """`cos` and `sin` of every position of the context, `[context, head_dim]` (each
        frequency twice: once per half), sliced to the input's length at run time."""
        assert self.shape.rope_base is not None
        half = self.shape.head_dim // 2
        inverse = 1.0 / self.shape.rope_base ** (np.arange(half, dtype=np.float64) * 2 / (2 * half))
        angles = np.outer(np.arange(self.shape.context, dtype=np.float64), inverse)
        angles = np.concatenate([angles, angles], axis=1)
        zero = self._const("rope_zero", np.zeros(1, np.int64))
        seq = self._op("Shape", ["input_ids"], start=1, end=2)
        self.cos = self._op(
            "Slice", [self._const("rope_cos", np.cos(angles).astype(np.float32)), zero, seq, zero]
        )
        self.sin = self._op(
            "Slice", [self._const("rope_sin", np.sin(angles).astype(np.float32)), zero, seq, zero]
        )
        self.halves = self._const("rope_halves", np.array([half, half], np.int64))
        self.thirds = self._const("qkv_sizes", np.array([self.shape.hidden] * 3, np.int64))

    def _rotate(self, x: str) -> str:
        """`x * cos + rotate_half(x) * sin`, `rotate_half(x) = [-x2, x1]`."""
        first, second = self._split(x, self.halves, 2)
        rotated = self._op("Concat", [self._op("Neg", [second]), first], axis=-1)
        return self._op(
            "Add", [self._op("Mul", [x, self.cos]), self._op("Mul", [rotated, self.sin])]
        )

    def _split(self, x: str, sizes: str, count: int) -> list[str]:
        from onnx import helper

        outputs = [self._name("split") for _ in range(count)]
        self.nodes.append(helper.make_node("Split", [x, sizes], outputs, axis=-1))
        return outputs

    def _projections(self, x: str, prefix: str, heads: str) -> tuple[str, str, str]:
        query, key, value = (
            self._op("Transpose", [self._op("Reshape", [part, heads])], perm=[0, 2, 1, 3])
            for part in self._split(self._linear(x, f"{prefix}.attn_qkv"), self.thirds, 3)
        )
        key = self._op("Transpose", [self._rotate(key)], perm=[0, 1, 3, 2])
        return self._rotate(query), key, value

    def _ffn(self, x: str, prefix: str) -> str:
        gate = self._linear(x, f"{prefix}.ffn_gate")
        silu = self._op("Mul", [gate, self._op("Sigmoid", [gate])])
        return self._op("Mul", [silu, self._linear(x, f"{prefix}.ffn_up")])
