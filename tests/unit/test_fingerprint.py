"""The content fingerprint on hand-built GGUF files: it follows the bytes, not the path,
size or mtime, and reads a fixed sample rather than the whole file."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from embellama.config import ModelConfig
from embellama.model.fingerprint import SAMPLE_BYTES, gguf_fingerprint
from embellama.model.gguf import read_gguf_info
from embellama.pipeline import FileStamp


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _gguf(path: Path, tensors: dict[str, int], *, name: str = "m") -> Path:
    """A GGUF file with F32 tensors of the given element counts, all zeros."""
    kvs = [
        _string("general.architecture") + struct.pack("<I", 8) + _string("bert"),
        _string("general.name") + struct.pack("<I", 8) + _string(name),
        _string("bert.embedding_length") + struct.pack("<II", 4, 8),
        _string("bert.context_length") + struct.pack("<II", 4, 128),
    ]
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs)
    offset = 0
    for tensor, elements in tensors.items():
        header += _string(tensor) + struct.pack("<IQIQ", 1, elements, 0, offset)
        offset += -(-4 * elements // 32) * 32
    header += b"\0" * (-len(header) % 32)
    with path.open("wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + offset)  # sparse: a big tensor costs no disk
    return path


def _fingerprint(path: Path) -> str:
    return gguf_fingerprint(read_gguf_info(path))


def _poke(path: Path, offset: int) -> None:
    """Change one byte in place, keeping size and mtime to the nanosecond."""
    stat = path.stat()
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(b"\x01")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_the_same_bytes_at_two_paths_are_one_model(tmp_path: Path) -> None:
    first = _gguf(tmp_path / "a.gguf", {"w": 1000, "b": 8})
    (tmp_path / "elsewhere").mkdir()
    second = shutil.copyfile(first, tmp_path / "elsewhere" / "renamed.gguf")
    assert _fingerprint(first) == _fingerprint(second)
    link = tmp_path / "link.gguf"
    link.symlink_to(first)
    assert _fingerprint(link) == _fingerprint(first)


@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_other_tensor_bytes_with_the_same_size_and_mtime_are_another_model(
    tmp_path: Path, where: str
) -> None:
    """Every tensor is sampled at its start, middle and end: a fine-tune, which changes
    every weight, changes each sample."""
    path = _gguf(tmp_path / "m.gguf", {"small": 8, "big": 100_000})
    info = read_gguf_info(path)
    before, stamp = _fingerprint(path), FileStamp.of(ModelConfig(path))
    start, length = info.tensor_extents[1]
    offset = {"start": start, "middle": start + length // 2, "end": start + length - 1}[where]
    _poke(path, offset)
    after = FileStamp.of(ModelConfig(path))
    assert (after.size, after.mtime_ns) == (stamp.size, stamp.mtime_ns)
    assert after.fingerprint != before == stamp.fingerprint
    assert _fingerprint(path) != before


def test_a_small_tensor_is_hashed_whole(tmp_path: Path) -> None:
    path = _gguf(tmp_path / "m.gguf", {"small": 3 * SAMPLE_BYTES // 4})
    before = _fingerprint(path)
    start, length = read_gguf_info(path).tensor_extents[0]
    _poke(path, start + length // 3)
    assert _fingerprint(path) != before


def test_a_metadata_change_is_another_model(tmp_path: Path) -> None:
    """Same tensors, same size (the names are as long): the header is hashed whole."""
    first = _gguf(tmp_path / "a.gguf", {"w": 64}, name="a")
    second = _gguf(tmp_path / "b.gguf", {"w": 64}, name="b")
    assert first.stat().st_size == second.stat().st_size
    assert _fingerprint(first) != _fingerprint(second)


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_a_large_file_costs_a_sample_not_a_read(tmp_path: Path) -> None:
    """4 GiB of tensors (sparse on disk): the fingerprint reads ~12 KiB per tensor."""
    tensors = {f"blk.{n}.weight": 1 << 26 for n in range(16)}  # 16 x 256 MiB
    path = _gguf(tmp_path / "big.gguf", tensors)
    assert path.stat().st_size > 4 << 30
    info = read_gguf_info(path)
    before = _bytes_read()
    gguf_fingerprint(info)
    read = _bytes_read() - before
    assert read <= info.data_offset + 16 * 3 * SAMPLE_BYTES + 64 * 1024
