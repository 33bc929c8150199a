"""Which version of a model serves a request: a weighted choice that is sticky per key.

Weighted rendezvous hashing: each (key, version) pair hashes to a uniform u in (0, 1);
the version with the smallest -ln(u) / weight wins. A version wins with probability
weight / total, the same key always gets the same version while the weights stand, and
raising one version's weight (the others unchanged) moves keys only into it, lowering
one only out of it, whatever the number of versions; with two versions, 90/10 -> 80/20
moves only keys into the second. Pure functions: no I/O, no state, no HTTP.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

from embellama.errors import ConfigError

__all__ = ["assignment_point", "check_weights", "choose"]

_SCALE = float(1 << 64)


def assignment_point(key: str, version: str) -> float:
    """A uniform number in (0, 1) for this key and version, the same in every process."""
    digest = hashlib.blake2b(f"{version}\0{key}".encode("utf-8", "surrogatepass"), digest_size=8)
    return (int.from_bytes(digest.digest(), "big") + 0.5) / _SCALE


def choose(weights: Sequence[tuple[str, float]], key: str) -> str | None:
    """The version `key` is assigned to; None when no version has a weight above 0."""
    best, best_score = None, math.inf
    for version, weight in weights:
        if weight <= 0:
            continue
        # -ln(u)/w compared as its log: the same order, and a tiny weight stays finite.
        score = math.log(-math.log(assignment_point(key, version))) - math.log(weight)
        if score < best_score:
            best, best_score = version, score
    return best


def check_weights(
    family: str, given: Mapping[str, object], known: Sequence[str]
) -> dict[str, float]:
    """New weights for `family`'s `known` versions: each named one known, each a finite
    number >= 0, their sum > 0; a version left out gets 0 (promotion: `{"v2": 100}`)."""
    if not given:
        raise ConfigError(f"name at least one version of model {family!r} and its weight")
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(
            f"model {family!r} has no version {unknown[0]!r}; its versions: {', '.join(known)}"
        )
    weights = dict.fromkeys(known, 0.0)
    for version, weight in given.items():
        number = isinstance(weight, (int, float)) and not isinstance(weight, bool)
        if not number or not (0 <= float(weight) < math.inf):  # type: ignore[arg-type]
            raise ConfigError(
                f"the weight of version {version!r} must be a number >= 0, got {weight!r}"
            )
        weights[version] = float(weight)  # type: ignore[arg-type]
    if not sum(weights.values()) > 0:
        raise ConfigError(f"the weights of model {family!r} must not all be 0")
    return weights
