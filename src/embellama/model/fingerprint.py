"""A model file's identity from its content: what the cache keys and what workers check.

Hashes the header (metadata and tensor table) whole, and a fixed sample of every tensor's
bytes: its first, middle and last 4 KiB. The same file at any path, copied or downloaded,
gets the same fingerprint; a fine-tune or re-quantization changes every tensor and so its
fingerprint, whatever its size and mtime. An edit confined to unsampled bytes goes unseen:
that is the price of reading ~12 KiB per tensor instead of the whole file
(`cache_version` in the model's config names the vectors explicitly instead).

Knows nothing of how the header was parsed: a caller passes where the data starts and
each tensor's extent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from embellama.model.gguf import GGUFInfo

__all__ = ["SAMPLE_BYTES", "content_fingerprint", "gguf_fingerprint"]

# Bytes hashed at each of a tensor's three sample points; a tensor of up to three
# samples is hashed whole.
SAMPLE_BYTES = 4096
# Changes when the sampling changes, so old and new fingerprints never compare equal.
_SCHEME = b"embellama-gguf-fingerprint-1"


def gguf_fingerprint(info: GGUFInfo) -> str:
    """The fingerprint of the file `info` was read from."""
    return content_fingerprint(info.path, info.data_offset, info.tensor_extents)


def content_fingerprint(
    path: str | Path, header_end: int, extents: Sequence[tuple[int, int]]
) -> str:
    """Hex blake2b of the file's size, bytes `[0, header_end)` and a sample of each
    `(offset, length)` extent; reads a few KiB per extent, never the whole file."""
    digest = hashlib.blake2b(_SCHEME, digest_size=16)
    with Path(path).open("rb") as handle:
        size = handle.seek(0, 2)
        digest.update(size.to_bytes(8, "little"))
        handle.seek(0)
        digest.update(handle.read(header_end))
        for offset, length in extents:
            for start, count in _samples(offset, length):
                handle.seek(start)
                digest.update(handle.read(count))
    return digest.hexdigest()


def _samples(offset: int, length: int) -> list[tuple[int, int]]:
    if length <= 3 * SAMPLE_BYTES:
        return [(offset, length)]
    middle = offset + (length - SAMPLE_BYTES) // 2
    return [
        (offset, SAMPLE_BYTES),
        (middle, SAMPLE_BYTES),
        (offset + length - SAMPLE_BYTES, SAMPLE_BYTES),
    ]
