"""What names a cached vector: the model's identity, its pooling, and the exact token ids.

The ids are the ones that were decoded (after truncation, with special tokens), so the
key covers the text and everything that turned it into tokens: tokenizer, truncation
mode, and any prefix a later stage adds. The model's identity is its content
fingerprint (model/fingerprint.py), or the operator's `cache_version`; never its path or
mtime, so replicas holding one file at different paths share entries, and a different
file with the same size and mtime never does.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["CacheKey", "ModelTag", "parse_size"]

CacheKey = bytes


@dataclass(frozen=True)
class ModelTag:
    """A short, stable name for (model identity, pooling): the prefix of its keys."""

    tag: bytes

    @classmethod
    def of(
        cls,
        fingerprint: str,
        pooling: str,
        *,
        cache_version: str | None = None,
        version: str | None = None,
        engine: str = "llama.cpp",
    ) -> ModelTag:
        """`cache_version`, when the operator set one, names the vectors instead of the
        file's fingerprint: models sharing it share entries, whatever their files.
        `version` (a model served as one of several versions of a name) enters the
        identity, so two versions never share entries, not even of one file."""
        if cache_version is not None:
            identity = f"version\0{cache_version}\0{pooling}"
        else:
            identity = f"content\0{fingerprint}\0{pooling}"
        if version is not None:
            identity += f"\0served-version\0{version}"
        if engine != "llama.cpp":  # another engine rounds differently: its own entries
            identity += f"\0engine\0{engine}"
        return cls(hashlib.blake2b(identity.encode(), digest_size=8).hexdigest().encode())

    def key(self, ids: npt.NDArray[np.int32]) -> CacheKey:
        digest = hashlib.blake2b(np.ascontiguousarray(ids, "<i4").tobytes(), digest_size=16)
        return self.tag + b":" + digest.hexdigest().encode()


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str | int) -> int:
    """`256MB`, `1.5GiB`, `0` or a plain byte count -> bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"expected a size such as 256MB, 1GiB or 0, got {text!r}")
    number, unit = float(match.group(1)), (match.group(2) or "").lower().replace("b", "")
    if unit.endswith("i"):
        return int(number * 1024 ** ("kmgt".index(unit[0]) + 1))
    return int(number * _UNITS[unit])
