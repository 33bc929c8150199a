"""Sticky weighted version choice (routing.py) and the registry's use of it: the
distribution, stickiness, minimal movement when weights change, and pins."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from embellama import ConfigError, ModelConfig, ModelNotFoundError
from embellama.config import EngineConfig, first_duplicate_name, with_versions
from embellama.errors import NoWorkerError
from embellama.registry import ModelRegistry
from embellama.routing import assignment_point, check_weights, choose

KEYS = [f"user-{n}" for n in range(10_000)]


def assign(weights: dict[str, float]) -> dict[str, str | None]:
    return {key: choose(list(weights.items()), key) for key in KEYS}


def test_ten_thousand_keys_land_within_two_percent_of_90_10() -> None:
    shares = Counter(assign({"v1": 90, "v2": 10}).values())
    assert abs(shares["v1"] / len(KEYS) - 0.90) <= 0.02
    assert abs(shares["v2"] / len(KEYS) - 0.10) <= 0.02


def test_three_versions_land_within_two_percent_of_their_weights() -> None:
    shares = Counter(assign({"a": 50, "b": 30, "c": 20}).values())
    for version, share in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert abs(shares[version] / len(KEYS) - share) <= 0.02


def test_the_same_key_always_gets_the_same_version() -> None:
    weights = [("v1", 50.0), ("v2", 50.0)]
    first = {key: choose(weights, key) for key in KEYS[:2000]}
    for _ in range(3):
        assert {key: choose(weights, key) for key in KEYS[:2000]} == first
    assert assignment_point("k", "v1") == assignment_point("k", "v1")
    assert 0 < assignment_point("", "v1") < 1


def test_raising_v2_from_10_to_20_moves_only_keys_into_v2() -> None:
    before, after = assign({"v1": 90, "v2": 10}), assign({"v1": 80, "v2": 20})
    moved = [key for key in KEYS if before[key] != after[key]]
    assert moved, "some keys must move"
    assert all(before[key] == "v1" and after[key] == "v2" for key in moved)
    # As few as the weights require: about 10 % of the keys, not a reshuffle.
    assert abs(len(moved) / len(KEYS) - 0.10) <= 0.02


def test_raising_one_of_three_weights_moves_keys_only_into_it() -> None:
    """Weights are relative: raising v3 alone moves keys from v1 and v2 into v3 only."""
    before = assign({"v1": 60, "v2": 30, "v3": 10})
    after = assign({"v1": 60, "v2": 30, "v3": 25})
    moved = [key for key in KEYS if before[key] != after[key]]
    assert moved and all(after[key] == "v3" for key in moved)
    assert {before[key] for key in moved} == {"v1", "v2"}


def test_zero_weights_are_never_chosen_and_all_zero_chooses_none() -> None:
    assert set(assign({"v1": 0, "v2": 100}).values()) == {"v2"}
    assert choose([("v1", 0.0), ("v2", 0.0)], "k") is None


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "name at least one version"),
        ({"v3": 1}, "has no version 'v3'"),
        ({"v1": -1}, "must be a number >= 0"),
        ({"v1": "10"}, "must be a number >= 0"),
        ({"v1": True}, "must be a number >= 0"),
        ({"v1": float("inf")}, "must be a number >= 0"),
        ({"v1": float("nan")}, "must be a number >= 0"),
        ({"v1": 0, "v2": 0}, "must not all be 0"),
    ],
)
def test_bad_weights_are_refused(given: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_weights("m", given, ["v1", "v2"])


def test_a_version_left_out_gets_zero() -> None:
    assert check_weights("m", {"v2": 100}, ["v1", "v2"]) == {"v1": 0.0, "v2": 100.0}


@dataclass(eq=False)
class Fake:
    config: ModelConfig
    aliases: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.aliases = self.config.aliases

    @property
    def name(self) -> str:
        return self.config.resolved_name


def version(v: str | None, weight: float | None = None, *aliases: str, name: str = "m") -> Fake:
    return Fake(
        ModelConfig(
            path=Path(f"/models/{name}-{v}.gguf"),
            name=name,
            version=v,
            weight=weight,
            aliases=aliases,
        )
    )


def two_versions() -> tuple[ModelRegistry[Fake], Fake, Fake]:
    registry: ModelRegistry[Fake] = ModelRegistry()
    v1, v2 = version("v1", 90, "alias"), version("v2", 10, "alias")
    registry.add(v1)
    registry.add(v2)
    return registry, v1, v2


def test_the_registry_routes_a_name_and_its_aliases_by_weight() -> None:
    registry, _, _ = two_versions()
    chosen = Counter(registry.resolve("m", key=key).name for key in KEYS)
    assert abs(chosen["m@v1"] / len(KEYS) - 0.9) <= 0.02
    by_alias = {key: registry.resolve("alias", key=key) for key in KEYS[:500]}
    assert all(by_alias[key] is registry.resolve("m", key=key) for key in KEYS[:500])
    assert registry.resolve(None, key=KEYS[0]) is registry.resolve("m", key=KEYS[0])
    assert registry.weights("m") == {"v1": 90.0, "v2": 10.0}
    assert registry.names() == ["m@v1", "m@v2", "m", "alias"]


def test_a_pinned_name_is_never_rerouted() -> None:
    registry, v1, v2 = two_versions()
    for weights in ({"v1": 100}, {"v2": 100}, {"v1": 1, "v2": 99}):
        registry.set_weights("m", weights)
        assert all(registry.resolve("m@v1", key=key) is v1 for key in KEYS[:1000])
        assert all(registry.resolve("m@v2", key=key) is v2 for key in KEYS[:1000])


def test_promotion_sends_every_key_to_v2_and_v1_serves_pins_until_removed() -> None:
    registry, v1, v2 = two_versions()
    assert registry.set_weights("m", {"v2": 100}) == {"v1": 0.0, "v2": 100.0}
    assert all(registry.resolve("m", key=key) is v2 for key in KEYS[:1000])
    assert registry.resolve("m@v1") is v1
    with pytest.raises(ConfigError, match="several versions; name one: m@v1, m@v2"):
        registry.remove("m")
    assert registry.remove("m@v1") is v1
    with pytest.raises(ModelNotFoundError):
        registry.resolve("m@v1")
    assert registry.resolve("m", key="any") is v2


def test_a_name_whose_versions_all_weigh_zero_answers_no_worker() -> None:
    registry, v1, _ = two_versions()
    registry.set_weights("m", {"v2": 100})
    registry.remove("m@v2")
    with pytest.raises(NoWorkerError, match="no version of model 'm' has a weight above 0"):
        registry.resolve("m", key="k")
    assert registry.resolve("m@v1") is v1


def test_a_later_version_defaults_to_weight_zero_and_names_stay_separate() -> None:
    registry: ModelRegistry[Fake] = ModelRegistry()
    registry.add(version("v1"))
    registry.add(version("v2"))
    assert registry.weights("m") == {"v1": 100.0, "v2": 0.0}
    with pytest.raises(ConfigError, match="'m' is already loaded"):
        registry.add(Fake(ModelConfig(path=Path("/models/x.gguf"), name="m")))
    registry.add(version("1", None, "alias", name="other"))
    with pytest.raises(ConfigError, match="'m' is already loaded"):
        registry.add(Fake(ModelConfig(path=Path("/x.gguf"), name="y", aliases=("m",))))
    with pytest.raises(ConfigError, match="'alias' is already loaded"):
        registry.add(version("v3", None, "alias"))
    with pytest.raises(ConfigError, match="'m@v1' is already loaded"):
        registry.add(version("v1"))


def test_an_unversioned_name_taken_by_a_versioned_one_is_refused() -> None:
    registry: ModelRegistry[Fake] = ModelRegistry()
    registry.add(Fake(ModelConfig(path=Path("/models/m.gguf"), name="m")))
    with pytest.raises(ConfigError, match="'m' is already loaded"):
        registry.add(version("v1"))


def test_entries_sharing_a_name_become_versions_with_default_weights() -> None:
    a = ModelConfig(path=Path("/a.gguf"), name="m")
    b = ModelConfig(path=Path("/b.gguf"), name="m", version="v2")
    first, second = with_versions([a, b])
    assert (first.resolved_name, first.weight) == ("m@1", 100.0)
    assert (second.resolved_name, second.weight) == ("m@v2", 0.0)
    assert with_versions([a]) == (a,)  # an only entry keeps serving as plain "m"
    with pytest.raises(ConfigError, match="'m@1' is used twice"):
        EngineConfig(models=(a, a))
    with pytest.raises(ConfigError, match="weights summing to 0"):
        EngineConfig(models=(dataclass_replace(a, "v1", 0), dataclass_replace(b, "v2", 0)))
    assert first_duplicate_name(with_versions([a, b])) is None


def dataclass_replace(config: ModelConfig, v: str, weight: float) -> ModelConfig:
    import dataclasses

    return dataclasses.replace(config, version=v, weight=weight)


@pytest.mark.parametrize("bad", ["", " v1", "a@b", "v 1 "])
def test_bad_versions_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="model version must be"):
        ModelConfig(path=Path("/a.gguf"), version=bad)


def test_a_weight_is_routing_not_the_model() -> None:
    """A reload that changes only a weight keeps the model: configs compare equal."""
    a = ModelConfig(path=Path("/a.gguf"), name="m", version="v1", weight=10)
    b = ModelConfig(path=Path("/a.gguf"), name="m", version="v1", weight=90)
    assert a == b
    with pytest.raises(ConfigError, match="weight must be"):
        ModelConfig(path=Path("/a.gguf"), weight=-1)


def test_two_versions_of_one_file_get_two_cache_tags() -> None:
    from embellama.cache import ModelTag

    plain = ModelTag.of("fp", "mean")
    v1, v2 = (ModelTag.of("fp", "mean", version=v) for v in ("v1", "v2"))
    assert len({plain.tag, v1.tag, v2.tag}) == 3
    assert ModelTag.of("fp", "mean", version=None) == plain  # unversioned tags unchanged
    shared = [ModelTag.of("fp", "mean", cache_version="c", version=v) for v in ("v1", "v2")]
    assert shared[0] != shared[1]


def test_a_tiny_positive_weight_still_routes() -> None:
    """The check accepts any weight above 0; the choice must then route to it (a score
    of -ln(u)/w would overflow to inf for w = 5e-324 and choose nobody)."""
    assert check_weights("m", {"v1": 5e-324}, ["v1", "v2"]) == {"v1": 5e-324, "v2": 0.0}
    assert choose([("v1", 5e-324), ("v2", 0.0)], "k") == "v1"
    assert choose([("v1", 5e-324), ("v2", 1e-300)], "k") == "v2"
