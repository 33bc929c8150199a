"""Read a GGUF file's header without llama.cpp.

llama.cpp aborts the whole process on some malformed files, so every file is checked
here first: magic, version, every metadata entry, every tensor's extent within the
file. This module only reads; it never loads weights.

What the format holds (value types, tensor types and their block sizes, the versions
and alignment) comes from llama.cpp's own `gguf` package. Its `GGUFReader` is not used
to walk the header: it builds numpy views for every array item, seconds for a 262k-token
vocabulary (bench figures in the module's history); this walk skips long numeric arrays
and decodes each string once.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gguf.constants import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGMLQuantizationType,
    GGUFValueType,
)
from gguf.gguf_reader import READER_SUPPORTED_VERSIONS

from embellama.errors import ModelFileError

__all__ = ["GGUFInfo", "file_sha256", "read_gguf_info"]

_MAGIC = struct.pack("<I", GGUF_MAGIC)
_DENSE_PREFIXES = ("dense_2.", "dense_3.")

# Metadata value types with a fixed width: GGUF type -> struct format (little-endian).
# The types are the package's; keys are plain ints because the walk compares one per
# vocabulary entry, and an IntEnum comparison costs several times an int's.
_SCALARS: dict[int, str] = {
    int(GGUFValueType.UINT8): "B",
    int(GGUFValueType.INT8): "b",
    int(GGUFValueType.UINT16): "H",
    int(GGUFValueType.INT16): "h",
    int(GGUFValueType.UINT32): "I",
    int(GGUFValueType.INT32): "i",
    int(GGUFValueType.FLOAT32): "f",
    int(GGUFValueType.BOOL): "?",
    int(GGUFValueType.UINT64): "Q",
    int(GGUFValueType.INT64): "q",
    int(GGUFValueType.FLOAT64): "d",
}
_STRING, _ARRAY = int(GGUFValueType.STRING), int(GGUFValueType.ARRAY)
_U64 = struct.Struct("<Q")  # a string's length prefix, read once per vocabulary entry

# Elements and bytes per block of every tensor type, from the package, except Q8_1: the
# package lists 40 bytes, the ggml that llama-cpp-python 0.3.36 builds asserts
# `sizeof(block_q8_1) == 2*sizeof(ggml_half) + QK8_1` (36), and that ggml reads the file.
_BLOCK_SIZES: dict[GGMLQuantizationType, tuple[int, int]] = {
    **GGML_QUANT_SIZES,
    GGMLQuantizationType.Q8_1: (32, 36),
}

# ggml's F32, F16 and BF16: the unquantized tensor types.
_FLOAT_TYPES = frozenset(
    {GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16}
)

# llama.cpp's enum llama_pooling_type, as stored under `<arch>.pooling_type`.
POOLING_TYPE_NAMES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}


@dataclass(frozen=True)
class GGUFInfo:
    """Facts from a GGUF header that decide how the model is served."""

    path: Path
    file_size: int
    version: int
    architecture: str
    name: str | None
    n_embd: int
    context_length: int
    pooling_type: str | None
    causal_attention: bool
    tokenizer_model: str | None
    vocab_size: int
    n_tensors: int
    metadata: dict[str, Any] = field(repr=False)
    # SentencePiece vocabularies need <0x00>..<0xFF> tokens: without them llama.cpp
    # aborts the process (std::out_of_range) on the first character outside the vocab.
    has_byte_tokens: bool = True
    # sentence-transformers Dense layers after pooling (embeddinggemma's 2_Dense/3_Dense),
    # written by the converter's --sentence-transformers-dense-modules.
    post_pooling_dense: bool = False
    # A classifier head (`cls.output.*`): the file is a cross-encoder, scored with rank
    # pooling. `classifier_dense` is the head's first layer (`cls.*`, XLM-R's
    # classifier.dense); a BERT cross-encoder's pooler is dropped by the converter, so
    # its head arrives without one and llama.cpp would score it wrongly.
    classifier_head: bool = False
    classifier_dense: bool = False
    classifier_outputs: int = 0
    # Token types the embedding table knows; llama.cpp gives every token type 0.
    token_type_count: int = 1
    # A prompt template for pairs (`tokenizer.chat_template.rerank`), as Qwen3 rerankers have.
    rerank_template: bool = False
    # Where tensor data starts (the header and tensor table end there), and each tensor's
    # (absolute offset, bytes): what the content fingerprint (fingerprint.py) samples.
    data_offset: int = 0
    tensor_extents: tuple[tuple[int, int], ...] = field(default=(), repr=False)
    # Some tensor is in a quantized type (not F32, F16 or BF16).
    quantized: bool = False
    # The tensors' names, and the bytes their weights take widened to F32 (what an engine
    # that computes in F32 holds; quantized tensors counted as stored).
    tensor_names: frozenset[str] = field(default=frozenset(), repr=False)
    float32_bytes: int = 0


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """Parse and check `path`; raise `ModelFileError` naming what is wrong."""
    path = Path(path)
    try:
        return _read(path)
    except OSError as exc:  # a name too long, no permission, a directory in the way ...
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror}") from None


def _read(path: Path) -> GGUFInfo:
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"model path is not a file: {path}")
    size = path.stat().st_size
    if size < 24:
        raise ModelFileError(f"not a GGUF file (only {size} bytes): {path}")
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != _MAGIC:
            raise ModelFileError(f"not a GGUF file (bad magic {bytes(buf[:4])!r}): {path}")
        try:
            return _parse(path, size, _Reader(buf))
        except (struct.error, IndexError, UnicodeDecodeError, OverflowError) as exc:
            raise ModelFileError(f"GGUF file is truncated or corrupt: {path} ({exc})") from exc


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks so a multi-GB model needs no RAM."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Reader:
    """A cursor over the mapped file; every read checks bounds via struct."""

    def __init__(self, buf: mmap.mmap) -> None:
        self.buf = buf
        self.pos = 4

    def scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        (length,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        if self.pos + length > len(self.buf):
            raise struct.error(f"string of {length} bytes runs past the end of the file")
        text = self.buf[self.pos : self.pos + length].decode("utf-8")
        self.pos += length
        return text

    def value(self, type_id: int) -> Any:
        if type_id in _SCALARS:
            return self.scalar(_SCALARS[type_id])
        if type_id == _STRING:
            return self.string()
        if type_id == _ARRAY:
            return self.array()
        raise struct.error(f"unknown metadata value type {type_id}")

    def array(self) -> list[Any] | _ArraySummary:
        item_type = self.scalar("I")
        count = self.scalar("Q")
        if item_type in _SCALARS:
            width = struct.calcsize(_SCALARS[item_type])
            if self.pos + width * count > len(self.buf):
                raise struct.error(f"array of {count} items runs past the end of the file")
            if count > 64:
                self.pos += width * count
                return _ArraySummary(count)
        if item_type == _STRING:  # a vocabulary: one call per token, not two
            return [self.string() for _ in range(count)]
        return [self.value(item_type) for _ in range(count)]


@dataclass(frozen=True)
class _ArraySummary:
    """Stands in for a long numeric array (scores, token types) we only need the length of."""

    count: int

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True)
class _Tensor:
    """One entry of the tensor table: its offset is relative to the data section."""

    name: str
    type: GGMLQuantizationType
    offset: int
    nbytes: int


def _parse(path: Path, size: int, reader: _Reader) -> GGUFInfo:
    version = reader.scalar("I")
    if version not in READER_SUPPORTED_VERSIONS:
        raise ModelFileError(f"unsupported GGUF version {version}: {path}")
    n_tensors = reader.scalar("Q")
    n_kv = reader.scalar("Q")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = reader.string()
        metadata[key] = reader.value(reader.scalar("I"))
    tensors = [_tensor(path, reader) for _ in range(n_tensors)]
    data_offset = _data_offset(reader.pos, metadata)
    _check_tensor_extents(path, size, data_offset, tensors)
    info = _describe(path, size, version, n_tensors, metadata)
    names = {t.name for t in tensors}
    labels = metadata.get(f"{info.architecture}.classifier.output_labels")
    head = "cls.output.weight" in names
    return replace(
        info,
        post_pooling_dense=any(n.startswith(_DENSE_PREFIXES) for n in names),
        classifier_head=head,
        classifier_dense="cls.weight" in names,
        classifier_outputs=(len(labels) if labels else 1) if head else 0,
        data_offset=data_offset,
        tensor_extents=tuple((data_offset + t.offset, t.nbytes) for t in tensors),
        quantized=any(t.type not in _FLOAT_TYPES for t in tensors),
        tensor_names=frozenset(names),
        float32_bytes=sum(_as_float32(t) for t in tensors),
    )


def _as_float32(tensor: _Tensor) -> int:
    if tensor.type == GGMLQuantizationType.F32:
        return tensor.nbytes
    if tensor.type in _FLOAT_TYPES:  # F16, BF16: two bytes an element
        return tensor.nbytes * 2
    return tensor.nbytes


def _tensor(path: Path, reader: _Reader) -> _Tensor:
    """Read one tensor-table entry; its size comes from the package's block table, so a
    type the package does not know is refused rather than guessed."""
    name = reader.string()
    dims = [reader.scalar("Q") for _ in range(reader.scalar("I"))]
    type_id = reader.scalar("I")
    offset = reader.scalar("Q")
    try:
        kind = GGMLQuantizationType(type_id)
        block_elements, block_bytes = _BLOCK_SIZES[kind]
    except (ValueError, KeyError):
        raise ModelFileError(
            f"GGUF tensor {name!r} has unknown tensor type {type_id}: {path}"
        ) from None
    elements = 1
    for dim in dims:
        elements *= dim
    return _Tensor(name, kind, offset, elements // block_elements * block_bytes)


def _data_offset(table_end: int, metadata: dict[str, Any]) -> int:
    """Where tensor data starts: the end of the tensor table, rounded up to the alignment."""
    alignment = int(metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT))
    alignment = alignment or GGUF_DEFAULT_ALIGNMENT
    return -(-table_end // alignment) * alignment


def _check_tensor_extents(path: Path, size: int, data_offset: int, tensors: list[_Tensor]) -> None:
    """Every tensor must end inside the file: llama.cpp would read past it."""
    data_end = max((t.offset + t.nbytes for t in tensors), default=0)
    if data_offset + data_end > size:
        raise ModelFileError(
            f"GGUF file is truncated: tensors need {data_offset + data_end} bytes, "
            f"the file has {size}: {path}"
        )


def _describe(
    path: Path, size: int, version: int, n_tensors: int, metadata: dict[str, Any]
) -> GGUFInfo:
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        raise ModelFileError(f"GGUF file has no general.architecture: {path}")
    n_embd = metadata.get(f"{arch}.embedding_length")
    n_ctx = metadata.get(f"{arch}.context_length")
    if not isinstance(n_embd, int) or not isinstance(n_ctx, int):
        raise ModelFileError(f"GGUF file lacks {arch}.embedding_length/context_length: {path}")
    pooling = metadata.get(f"{arch}.pooling_type")
    tokens = metadata.get("tokenizer.ggml.tokens")
    return GGUFInfo(
        path=path,
        file_size=size,
        version=version,
        architecture=arch,
        name=metadata.get("general.name"),
        n_embd=n_embd,
        context_length=n_ctx,
        pooling_type=POOLING_TYPE_NAMES.get(pooling) if isinstance(pooling, int) else None,
        causal_attention=bool(metadata.get(f"{arch}.attention.causal", True)),
        tokenizer_model=metadata.get("tokenizer.ggml.model"),
        vocab_size=len(tokens) if tokens is not None else 0,
        n_tensors=n_tensors,
        has_byte_tokens=isinstance(tokens, list) and "<0x0A>" in tokens and "<0xFF>" in tokens,
        token_type_count=int(metadata.get("tokenizer.ggml.token_type_count", 1)),
        rerank_template="tokenizer.chat_template.rerank" in metadata,
        metadata={k: v for k, v in metadata.items() if not isinstance(v, (list, _ArraySummary))},
    )
