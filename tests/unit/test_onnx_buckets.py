"""How the ONNX Runtime engine cuts a batch into padded runs (model/onnx_session.py)."""

from __future__ import annotations

from embellama.model.onnx_session import PADDING_PER_ROW, buckets


def test_a_row_padded_by_more_than_the_limit_starts_its_own_run() -> None:
    """A server batch of short texts of mixed lengths is not padded to its longest."""
    limit = PADDING_PER_ROW
    lengths = [30 - limit - 1, 30, 10, 29, 30 - limit]
    assert buckets(lengths, 1024) == [[1, 3, 4], [0], [2]]


def test_equal_lengths_share_runs_up_to_the_token_budget() -> None:
    assert buckets([8] * 10, 32) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_sequence_longer_than_the_budget_runs_alone() -> None:
    assert buckets([2000, 5, 5], 1024) == [[0], [1, 2]]


def test_every_index_is_in_exactly_one_run() -> None:
    lengths = [(7 * index) % 61 + 1 for index in range(200)]
    runs = buckets(lengths, 256)
    assert sorted(index for run in runs for index in run) == list(range(200))
    for run in runs:
        width = lengths[run[0]]
        assert all(width - PADDING_PER_ROW <= lengths[index] <= width for index in run)
        assert len(run) * width <= 256 or len(run) == 1
