"""The one model registry and its reload plan, on plain stand-ins for served models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from embellama import ConfigError, ModelConfig, ModelNotFoundError, Pooling
from embellama.config import ModelSpec, ServiceLimits
from embellama.registry import ModelRegistry, plan_reload

ONE = ServiceLimits(workers=1)


@dataclass(eq=False)
class Fake:
    config: ModelConfig
    limits: ServiceLimits = ONE
    stamp: object = "v1"
    aliases: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.aliases = self.config.aliases

    @property
    def name(self) -> str:
        return self.config.resolved_name


def cfg(name: str, *aliases: str, pooling: Pooling | None = None) -> ModelConfig:
    return ModelConfig(
        path=Path(f"/models/{name}.gguf"), name=name, aliases=aliases, pooling=pooling
    )


def test_names_aliases_and_default() -> None:
    registry: ModelRegistry[Fake] = ModelRegistry()
    first, second = Fake(cfg("a", "alias-a")), Fake(cfg("b"))
    registry.add(first)
    registry.add(second)
    assert registry.resolve(None) is first
    assert registry.resolve("alias-a") is first
    assert registry.names() == ["a", "alias-a", "b"]
    with pytest.raises(ConfigError, match="'alias-a' is already loaded"):
        registry.add(Fake(cfg("c", "alias-a")))
    assert registry.remove("alias-a") is first  # unload by alias, like the library always did
    assert registry.resolve(None) is second
    with pytest.raises(ModelNotFoundError):
        registry.resolve("a")


def test_reload_keeps_only_what_is_unchanged() -> None:
    same, changed, replaced, dropped = (
        Fake(cfg("same")),
        Fake(cfg("changed")),
        Fake(cfg("replaced")),
        Fake(cfg("dropped")),
    )
    desired = [
        ModelSpec(cfg("new"), ONE),
        ModelSpec(cfg("changed", pooling=Pooling.CLS), ONE),
        ModelSpec(cfg("same"), ONE),
        ModelSpec(cfg("replaced"), ONE),
    ]
    stamps = {"replaced": "v2"}  # the file was replaced in place: new size or mtime
    plan = plan_reload(
        [same, changed, replaced, dropped],
        desired,
        lambda config: stamps.get(config.resolved_name, "v1"),
    )
    assert plan.keep == [same]
    assert [spec.config.resolved_name for spec in plan.start] == ["new", "changed", "replaced"]
    assert plan.retire == [changed, replaced, dropped]
    assert plan.order == ["new", "changed", "same", "replaced"]


def test_new_limits_restart_a_model() -> None:
    model = Fake(cfg("m"), limits=ONE)
    plan = plan_reload(
        [model], [ModelSpec(cfg("m"), ServiceLimits(workers=2))], lambda config: "v1"
    )
    assert plan.keep == [] and plan.retire == [model]


def test_a_reload_may_reuse_names_of_models_it_replaces() -> None:
    registry: ModelRegistry[Fake] = ModelRegistry()
    old = Fake(cfg("m", "alias"))
    registry.add(old)
    registry.check_free(["m", "alias"], ignoring=[old])
    with pytest.raises(ConfigError):
        registry.check_free(["alias"])
    registry.replace([Fake(cfg("m", "alias"))])
    assert registry.resolve("alias") is not old
