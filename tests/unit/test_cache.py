"""The cache without a model: byte-bounded LRU, sizes, keys, and single-flight."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from embellama.cache import EmbeddingCache, MemoryCache, ModelTag, parse_size
from embellama.cache.memory import ENTRY_OVERHEAD

DIM = 8


def vec(value: float) -> np.ndarray:
    return np.full(DIM, value, dtype=np.float32)


def test_lru_evicts_least_recently_used_within_the_byte_bound() -> None:
    def key(n: int) -> bytes:
        return f"k{n:03d}".encode()

    per_entry = MemoryCache.cost(key(0), vec(0))
    cache = MemoryCache(3 * per_entry)
    for n in range(3):
        cache.put(key(n), vec(n))
    assert cache.get(key(0)) is not None  # now the most recently used
    cache.put(key(3), vec(3))
    assert cache.get(key(1)) is None and cache.evictions == 1
    assert all(cache.get(key(n)) is not None for n in (0, 2, 3))
    for n in range(4, 200):
        cache.put(key(n), vec(n))
        assert cache.bytes <= cache.max_bytes
    assert cache.bytes == len(cache) * per_entry


def test_entries_are_owned_and_read_only() -> None:
    cache = MemoryCache(10_000)
    source = vec(1)
    cache.put(b"k", source)
    source[:] = 7
    stored = cache.get(b"k")
    assert stored is not None and stored[0] == 1 and not stored.flags.writeable


def test_cost_counts_keys_vectors_and_overhead() -> None:
    assert MemoryCache.cost(b"x" * 40, vec(0)) >= 40 + DIM * 4 + ENTRY_OVERHEAD
    assert MemoryCache(0).max_bytes == 0
    tiny = MemoryCache(10)
    tiny.put(b"k", vec(0))  # larger than the whole cache: not stored
    assert len(tiny) == 0 and tiny.bytes == 0


def test_clear_by_model_prefix() -> None:
    a, b = ModelTag(b"aaaa"), ModelTag(b"bbbb")
    cache = MemoryCache(100_000)
    ids = np.array([101, 7, 102], dtype=np.int32)
    cache.put(a.key(ids), vec(1))
    cache.put(b.key(ids), vec(2))
    assert a.key(ids) != b.key(ids)
    assert cache.clear(a.tag) == 1
    assert cache.get(a.key(ids)) is None and cache.get(b.key(ids)) is not None


def test_model_tags_differ_by_content_identity_and_pooling() -> None:
    base = ModelTag.of("c3964b8d", "mean")
    assert base == ModelTag.of("c3964b8d", "mean")
    versioned = ModelTag.of("c3964b8d", "mean", cache_version="v1")
    assert versioned == ModelTag.of("0000ffff", "mean", cache_version="v1")
    others = [
        ModelTag.of("c3964b8d", "cls"),
        ModelTag.of("c3964b8e", "mean"),
        versioned,
        ModelTag.of("c3964b8d", "cls", cache_version="v1"),
        ModelTag.of("c3964b8d", "mean", cache_version="v2"),
        # A version spelled like a fingerprint still names something else.
        ModelTag.of("x", "mean", cache_version="c3964b8d"),
    ]
    assert len({tag.tag for tag in [base, *others]}) == len(others) + 1


@pytest.mark.parametrize(
    ("text", "size"),
    [("0", 0), ("256MB", 256_000_000), ("1GiB", 1 << 30), ("512 KiB", 512 << 10), ("10b", 10)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="256MB"):
        parse_size("lots")


def test_concurrent_identical_inputs_are_computed_once() -> None:
    computed: list[list[int]] = []

    async def scenario() -> list[list[bool]]:
        cache = EmbeddingCache(MemoryCache(1 << 20))
        gate = asyncio.Event()

        async def compute(positions: list[int]) -> list[np.ndarray]:
            computed.append(positions)
            await gate.wait()
            return [vec(42) for _ in positions]

        requests = [
            asyncio.create_task(cache.resolve([b"same", b"same"], DIM, compute)) for _ in range(16)
        ]
        await asyncio.sleep(0.01)
        gate.set()
        lookups = await asyncio.gather(*requests)
        assert all(float(v[0]) == 42 for lookup in lookups for v in lookup.vectors)
        after = await cache.resolve([b"same"], DIM, compute)
        return [*(lookup.hit for lookup in lookups), after.hit]

    hits = asyncio.run(scenario())
    assert computed == [[0]]  # one decode of one input, for 32 asks
    assert hits[-1] == [True]


def test_waiters_compute_themselves_when_the_owner_fails() -> None:
    async def scenario() -> float:
        cache = EmbeddingCache(MemoryCache(1 << 20))
        gate = asyncio.Event()

        async def failing(positions: list[int]) -> list[np.ndarray]:
            await gate.wait()
            raise RuntimeError("the owner's request timed out")

        async def working(positions: list[int]) -> list[np.ndarray]:
            return [vec(7) for _ in positions]

        owner = asyncio.create_task(cache.resolve([b"k"], DIM, failing))
        await asyncio.sleep(0.01)
        waiter = asyncio.create_task(cache.resolve([b"k"], DIM, working))
        await asyncio.sleep(0.01)
        gate.set()
        with pytest.raises(RuntimeError):
            await owner
        return float((await waiter).vectors[0][0])

    assert asyncio.run(scenario()) == 7
