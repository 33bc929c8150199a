"""Group inputs into llama.cpp decodes by a token budget.

Longest first, so similar lengths share a decode; an input longer than the budget
runs alone rather than failing. Returns indices only: the caller restores order.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["plan_batches"]


def plan_batches(lengths: Sequence[int], max_tokens: int, max_sequences: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index in order:
        size = lengths[index]
        if current and (used + size > max_tokens or len(current) >= max_sequences):
            batches.append(current)
            current, used = [], 0
        current.append(index)
        used += size
    if current:
        batches.append(current)
    return batches
