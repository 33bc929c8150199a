"""The header reader on hand-built GGUF files: good, truncated, corrupt, not GGUF."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader

from embellama import ModelFileError, read_gguf_info


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _kv_u32(key: str, value: int) -> bytes:
    return _string(key) + struct.pack("<II", 4, value)


def _kv_str(key: str, value: str) -> bytes:
    return _string(key) + struct.pack("<I", 8) + _string(value)


def _tiny_gguf(*, tensor_elements: int = 16) -> bytes:
    kvs = [
        _kv_str("general.architecture", "bert"),
        _kv_u32("bert.embedding_length", 8),
        _kv_u32("bert.context_length", 128),
        _kv_u32("bert.pooling_type", 2),
        _string("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, 3)
        + b"".join(_string(t) for t in ("a", "b", "c")),
    ]
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kvs)) + b"".join(kvs)
    tensor = _string("w") + struct.pack("<I", 1) + struct.pack("<Q", tensor_elements)
    tensor += struct.pack("<IQ", 0, 0)  # F32 at offset 0
    body = header + tensor
    body += b"\0" * (-len(body) % 32)
    return body + b"\0" * (4 * tensor_elements)


def test_reads_facts(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(_tiny_gguf())
    info = read_gguf_info(path)
    assert (info.architecture, info.n_embd, info.context_length) == ("bert", 8, 128)
    assert info.pooling_type == "cls"
    assert info.vocab_size == 3
    assert info.causal_attention is True


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "only 0 bytes"),
        (b"PK\x03\x04" + b"\0" * 40, "bad magic"),
        (b"GGUF" + struct.pack("<IQQ", 99, 0, 0), "unsupported GGUF version 99"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 5) + b"\0" * 8, "truncated or corrupt"),
    ],
)
def test_rejects_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        read_gguf_info(path)


def test_rejects_truncated_tensor_data(tmp_path: Path) -> None:
    path = tmp_path / "cut.gguf"
    path.write_bytes(_tiny_gguf()[:-10])
    with pytest.raises(ModelFileError, match="truncated: tensors need"):
        read_gguf_info(path)


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        read_gguf_info(tmp_path / "nope.gguf")
    with pytest.raises(ModelFileError, match="not a file"):
        read_gguf_info(tmp_path)


def _one_tensor_gguf(type_id: int, elements: int, data_bytes: int) -> bytes:
    """A valid header with one tensor of `type_id`, then `data_bytes` of data."""
    kvs = [
        _kv_str("general.architecture", "bert"),
        _kv_u32("bert.embedding_length", 8),
        _kv_u32("bert.context_length", 128),
    ]
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kvs)) + b"".join(kvs)
    header += _string("blk.0.w") + struct.pack("<IQIQ", 1, elements, type_id, 0)
    header += b"\0" * (-len(header) % 32)
    return header + b"\0" * data_bytes


@pytest.mark.parametrize(
    ("kind", "elements", "nbytes"),
    [
        (GGMLQuantizationType.Q4_K, 512, 2 * 144),
        (GGMLQuantizationType.BF16, 10, 20),
        # Unknown to the old hand-written table, which counted it as 0 bytes.
        (GGMLQuantizationType.NVFP4, 128, 2 * 36),
    ],
)
def test_tensor_sizes_come_from_the_package(
    tmp_path: Path, kind: GGMLQuantizationType, elements: int, nbytes: int
) -> None:
    assert GGML_QUANT_SIZES[kind][1] * elements // GGML_QUANT_SIZES[kind][0] == nbytes
    path = tmp_path / "m.gguf"
    path.write_bytes(_one_tensor_gguf(kind, elements, nbytes))
    info = read_gguf_info(path)
    assert info.tensor_extents == ((info.data_offset, nbytes),)
    assert info.quantized is (kind is not GGMLQuantizationType.BF16)
    path.write_bytes(_one_tensor_gguf(kind, elements, nbytes - 1))
    with pytest.raises(ModelFileError, match=f"truncated: tensors need {info.file_size} bytes"):
        read_gguf_info(path)


def test_an_unknown_tensor_type_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(_one_tensor_gguf(4, 32, 64))  # Q4_2: removed from ggml long ago
    with pytest.raises(ModelFileError, match=r"GGUF tensor 'blk\.0\.w' has unknown tensor type 4"):
        read_gguf_info(path)


def test_the_extents_agree_with_the_packages_own_reader(tmp_path: Path) -> None:
    """GGUFReader (too slow to run on every load) is the reference for a small file."""
    path = tmp_path / "m.gguf"
    path.write_bytes(_one_tensor_gguf(GGMLQuantizationType.Q8_0, 64, 2 * 34))
    info, reference = read_gguf_info(path), GGUFReader(path)
    assert info.data_offset == reference.data_offset
    assert info.tensor_extents == tuple((t.data_offset, t.n_bytes) for t in reference.tensors)
    assert (
        info.metadata["bert.context_length"] == reference.fields["bert.context_length"].contents()
    )


def test_q8_1_is_sized_as_the_ggml_that_reads_the_file(tmp_path: Path) -> None:
    """ggml (llama-cpp-python 0.3.36) asserts a Q8_1 block is 2 halves + 32 bytes = 36;
    the package's table says 40, which would refuse a whole valid file as truncated."""
    path = tmp_path / "m.gguf"
    path.write_bytes(_one_tensor_gguf(GGMLQuantizationType.Q8_1, 64, 2 * 36))
    info = read_gguf_info(path)
    assert info.tensor_extents == ((info.data_offset, 2 * 36),)
