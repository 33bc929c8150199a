"""Ray actors are sized to the cluster they run on: what each reserves, and the error
with the sums when the cluster cannot run a read beside them."""

from __future__ import annotations

import pytest

from embellama.errors import ConfigError
from embellama.ray import actor_cpus


def test_actors_that_fit_reserve_their_threads() -> None:
    assert actor_cpus(2, 1, 3) == 1.0
    assert actor_cpus(4, 8, 64) == 8.0


def test_actors_on_a_small_cluster_share_all_but_one_cpu() -> None:
    """The README's 2 actors x 1 thread on 2 CPUs: one CPU stays free to read with."""
    share = actor_cpus(2, 1, 2)
    assert share == 0.5 and 2 * share + 1 <= 2
    assert actor_cpus(16, 8, 4) * 16 + 1 <= 4


def test_a_one_cpu_cluster_is_an_error_with_the_sums() -> None:
    with pytest.raises(ConfigError) as caught:
        actor_cpus(2, 1, 1)
    message = str(caught.value)
    assert "2 actors x 1 threads plus 1 CPU to read with need 3 CPUs" in message
    assert "the Ray cluster has 1" in message
