"""Token-budget packing: budget and sequence caps hold, nothing is lost or duplicated."""

from __future__ import annotations

import random

from embellama.batching.packing import plan_batches


def test_every_index_once_and_budget_respected() -> None:
    rng = random.Random(3)
    lengths = [rng.randint(1, 300) for _ in range(500)]
    batches = plan_batches(lengths, max_tokens=256, max_sequences=16)
    flat = sorted(i for batch in batches for i in batch)
    assert flat == list(range(500))
    for batch in batches:
        assert len(batch) <= 16
        assert len(batch) == 1 or sum(lengths[i] for i in batch) <= 256


def test_long_input_runs_alone_and_lengths_are_grouped() -> None:
    batches = plan_batches([10, 900, 12, 11], max_tokens=64, max_sequences=8)
    assert batches[0] == [1]
    assert sorted(batches[1]) == [0, 2, 3]


def test_empty() -> None:
    assert plan_batches([], 10, 10) == []
