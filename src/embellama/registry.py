"""The one model registry: names, aliases, the default model, and what a reload changes.

Used by the library engine and the server alike, so a name means the same everywhere:
every lookup, unload included, accepts an alias. Holds models; never loads or starts one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from embellama.config import ModelConfig, ModelSpec, ServiceLimits
from embellama.errors import ConfigError, ModelNotFoundError

__all__ = ["ModelRegistry", "ReloadPlan", "plan_reload"]


class _Registered(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def aliases(self) -> tuple[str, ...]: ...


M = TypeVar("M", bound=_Registered)


class ModelRegistry(Generic[M]):
    """Models by name and alias; the first one added is the default until it leaves.

    Only the event loop that serves the models changes it, so it needs no lock.
    """

    def __init__(self) -> None:
        self._models: dict[str, M] = {}
        self._names: dict[str, str] = {}

    def __iter__(self) -> Iterator[M]:
        return iter(list(self._models.values()))

    def __len__(self) -> int:
        return len(self._models)

    def names(self) -> list[str]:
        """Every name and alias, primary names first in load order."""
        return [n for model in self._models.values() for n in (model.name, *model.aliases)]

    def check_free(self, names: Sequence[str], *, ignoring: Sequence[M] = ()) -> None:
        owners = {id(model) for model in ignoring}
        taken = [
            name
            for name in names
            if name in self._names and id(self._models[self._names[name]]) not in owners
        ]
        if taken:
            raise ConfigError(f"model name or alias {taken[0]!r} is already loaded")

    def add(self, model: M) -> None:
        self.check_free([model.name, *model.aliases])
        self._models[model.name] = model
        self._names.update(dict.fromkeys((model.name, *model.aliases), model.name))

    def remove(self, name: str) -> M:
        model = self.resolve(name)
        del self._models[model.name]
        self._names = {k: v for k, v in self._names.items() if v != model.name}
        return model

    def resolve(self, name: str | None, prefer: Callable[[M], bool] | None = None) -> M:
        """`None` (no model named by the caller) means the default: the first loaded one
        that `prefer` accepts (a reranker for a rerank call), else the first loaded."""
        if name is None and prefer is not None:
            for model in self._models.values():
                if prefer(model):
                    return model
        key = next(iter(self._models), None) if name is None else self._names.get(name)
        if key is None:
            raise ModelNotFoundError(name or "(default)", sorted(self._names))
        return self._models[key]

    def replace(self, models: Sequence[M]) -> None:
        """Install exactly `models`, in this order (a reload's outcome)."""
        self._models, self._names = {}, {}
        for model in models:
            self.add(model)


class _Reloadable(_Registered, Protocol):
    @property
    def config(self) -> ModelConfig: ...

    @property
    def limits(self) -> ServiceLimits: ...

    @property
    def stamp(self) -> object: ...


R = TypeVar("R", bound=_Reloadable)


@dataclass(frozen=True)
class ReloadPlan(Generic[R]):
    """`keep` runs on untouched; `start` are specs to load; `retire` drain and stop."""

    keep: list[R]
    start: list[ModelSpec]
    retire: list[R]
    order: list[str]


def plan_reload(
    current: Sequence[R],
    desired: Sequence[ModelSpec],
    stamp_of: Callable[[ModelConfig], object],
) -> ReloadPlan[R]:
    """A model is kept only if its config, limits and file stamp (size, mtime, content
    fingerprint: `FileStamp`) are unchanged."""
    by_name = {model.name: model for model in current}
    keep: list[R] = []
    start: list[ModelSpec] = []
    for spec in desired:
        old = by_name.get(spec.config.resolved_name)
        unchanged = (
            old is not None
            and old.config == spec.config
            and old.limits == spec.limits
            and old.stamp == stamp_of(spec.config)
        )
        if unchanged:
            assert old is not None
            keep.append(old)
        else:
            start.append(spec)
    retire = [model for model in current if all(model is not k for k in keep)]
    order = [spec.config.resolved_name for spec in desired]
    return ReloadPlan(keep=keep, start=start, retire=retire, order=order)
