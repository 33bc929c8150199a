"""Read a GGUF file's header without llama.cpp.

llama.cpp aborts the whole process on some malformed files, so every file is checked
here first: magic, version, every metadata entry, every tensor's extent within the
file. This module only reads; it never loads weights.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from embellama.errors import ModelFileError

__all__ = ["GGUFInfo", "file_sha256", "read_gguf_info"]

_MAGIC = b"GGUF"
_SUPPORTED_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32
_DENSE_PREFIXES = ("dense_2.", "dense_3.")

# Scalar value types: type id -> struct format.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9

# ggml tensor types: type id -> (bytes per block, elements per block). Types missing
# here are still accepted; only their end offset cannot be checked.
_TENSOR_BLOCKS = {
    0: (4, 1),
    1: (2, 1),
    2: (18, 32),
    3: (20, 32),
    6: (22, 32),
    7: (24, 32),
    8: (34, 32),
    9: (36, 32),
    10: (84, 256),
    11: (110, 256),
    12: (144, 256),
    13: (176, 256),
    14: (210, 256),
    15: (292, 256),
    16: (66, 256),
    17: (74, 256),
    18: (98, 256),
    19: (50, 256),
    20: (18, 32),
    21: (110, 256),
    22: (82, 256),
    23: (136, 256),
    24: (1, 1),
    25: (2, 1),
    26: (4, 1),
    27: (8, 1),
    28: (8, 1),
    29: (56, 256),
    30: (2, 1),
    34: (54, 256),
    35: (66, 256),
    39: (17, 32),
}

# ggml's F32, F16 and BF16: the unquantized tensor types.
_FLOAT_TYPES = frozenset({0, 1, 30})

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
        length = self.scalar("Q")
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
        return [self.value(item_type) for _ in range(count)]


@dataclass(frozen=True)
class _ArraySummary:
    """Stands in for a long numeric array (scores, token types) we only need the length of."""

    count: int

    def __len__(self) -> int:
        return self.count


def _parse(path: Path, size: int, reader: _Reader) -> GGUFInfo:
    version = reader.scalar("I")
    if version not in _SUPPORTED_VERSIONS:
        raise ModelFileError(f"unsupported GGUF version {version}: {path}")
    n_tensors = reader.scalar("Q")
    n_kv = reader.scalar("Q")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = reader.string()
        metadata[key] = reader.value(reader.scalar("I"))
    names, data_offset, extents, types = _check_tensor_extents(
        path, size, reader, n_tensors, metadata
    )
    info = _describe(path, size, version, n_tensors, metadata)
    labels = metadata.get(f"{info.architecture}.classifier.output_labels")
    head = "cls.output.weight" in names
    return replace(
        info,
        post_pooling_dense=any(n.startswith(_DENSE_PREFIXES) for n in names),
        classifier_head=head,
        classifier_dense="cls.weight" in names,
        classifier_outputs=(len(labels) if labels else 1) if head else 0,
        data_offset=data_offset,
        tensor_extents=extents,
        quantized=bool(types - _FLOAT_TYPES),
    )


def _check_tensor_extents(
    path: Path, size: int, reader: _Reader, n_tensors: int, metadata: dict[str, Any]
) -> tuple[list[str], int, tuple[tuple[int, int], ...], set[int]]:
    """Check every tensor ends inside the file; return the tensor names, where the data
    section starts, each tensor's (absolute offset, bytes) and the tensor types."""
    data_end = 0
    names = []
    types: set[int] = set()
    spans: list[tuple[int, int]] = []
    for _ in range(n_tensors):
        name = reader.string()
        names.append(name)
        n_dims = reader.scalar("I")
        dims = [reader.scalar("Q") for _ in range(n_dims)]
        type_id = reader.scalar("I")
        types.add(type_id)
        offset = reader.scalar("Q")
        spans.append((offset, _tensor_bytes(type_id, dims)))
        data_end = max(data_end, offset + spans[-1][1])
    alignment = int(metadata.get("general.alignment", _DEFAULT_ALIGNMENT)) or _DEFAULT_ALIGNMENT
    data_start = -(-reader.pos // alignment) * alignment
    if data_start + data_end > size:
        raise ModelFileError(
            f"GGUF file is truncated: tensors need {data_start + data_end} bytes, "
            f"the file has {size}: {path}"
        )
    return names, data_start, _absolute_extents(spans, data_start, size), types


def _absolute_extents(
    spans: list[tuple[int, int]], data_start: int, size: int
) -> tuple[tuple[int, int], ...]:
    """Spans as absolute file extents; a tensor of a type whose size is not known here
    reaches to the next tensor's start (or the end of the file)."""
    starts = sorted({data_start + offset for offset, _ in spans} | {size})
    extents = []
    for offset, length in spans:
        start = data_start + offset
        if length == 0:
            length = max(0, min((s for s in starts if s > start), default=size) - start)
        extents.append((start, length))
    return tuple(extents)


def _tensor_bytes(type_id: int, dims: list[int]) -> int:
    block = _TENSOR_BLOCKS.get(type_id)
    if block is None:
        return 0
    elements = 1
    for dim in dims:
        elements *= dim
    block_bytes, block_elements = block
    return elements // block_elements * block_bytes


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
