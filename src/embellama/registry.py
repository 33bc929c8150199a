"""The one model registry: names, aliases, the default model, and what a reload changes.

Used by the library engine and the server alike, so a name means the same everywhere:
every lookup, unload included, accepts an alias. Holds models; never loads or starts one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from embellama.config import ModelConfig, ModelSpec, ServiceLimits
from embellama.errors import ConfigError, ModelNotFoundError, NoWorkerError
from embellama.routing import check_weights, choose

__all__ = ["ModelRegistry", "ReloadPlan", "plan_reload"]


class _Registered(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def aliases(self) -> tuple[str, ...]: ...

    @property
    def config(self) -> ModelConfig: ...


M = TypeVar("M", bound=_Registered)


class ModelRegistry(Generic[M]):
    """Models by name and alias; the first one added is the default until it leaves.

    A versioned model is registered as "name@version" (a pin); its name and aliases
    route among the name's versions by weight (routing.py), sticky per assignment key.
    Only the event loop that serves the models changes it, so it needs no lock.
    """

    def __init__(self) -> None:
        self._models: dict[str, M] = {}
        self._names: dict[str, str] = {}
        # A versioned name and its aliases -> the name (its versions route by weight).
        self._families: dict[str, str] = {}
        # Every model's share of its name's requests, by served name.
        self._weights: dict[str, float] = {}

    def __iter__(self) -> Iterator[M]:
        return iter(list(self._models.values()))

    def __len__(self) -> int:
        return len(self._models)

    def names(self) -> list[str]:
        """Every name and alias, primary names first in load order."""
        exact = [n for model in self._models.values() for n in (model.name, *_exact_aliases(model))]
        return exact + list(self._families)

    def check_free(
        self,
        names: Sequence[str],
        *,
        family: str | None = None,
        ignoring: Sequence[M] = (),
    ) -> None:
        """Refuse a model whose `names` (its own, then its aliases) another one holds; a
        version's name (`family`) and aliases are free when only its versions hold them."""
        owners = {id(model) for model in ignoring}
        exact = list(names) if family is None else list(names[:1])
        routed = [] if family is None else [family, *names[1:]]
        for wanted in (*exact, *routed):
            held = self._names.get(wanted)
            if held is not None and id(self._models[held]) not in owners:
                raise ConfigError(f"model name or alias {wanted!r} is already loaded")
        for wanted in exact:
            if wanted in self._families and self._members(self._families[wanted], owners):
                raise ConfigError(f"model name or alias {wanted!r} is already loaded")
        for wanted in routed:
            held_by = self._families.get(wanted)
            if held_by is not None and held_by != family and self._members(held_by, owners):
                raise ConfigError(f"model name or alias {wanted!r} is already loaded")

    def _members(self, family: str, ignoring: Collection[int] = ()) -> list[M]:
        return [
            m for m in self._models.values() if m.config.family == family and id(m) not in ignoring
        ]

    def add(self, model: M, weight: float | None = None) -> None:
        """`weight`: its share of its name's requests; default its config's, else 100
        for a name's first version and 0 for a later one (it serves pins only)."""
        config = model.config
        self.check_free([model.name, *model.aliases], family=config.family)
        family = config.family
        chosen = weight if weight is not None else config.weight
        if chosen is None:
            chosen = 0.0 if family is not None and self._members(family) else 100.0
        self._models[model.name] = model
        self._weights[model.name] = float(chosen)
        self._names.update(dict.fromkeys((model.name, *_exact_aliases(model)), model.name))
        if family is not None:
            self._families.update(dict.fromkeys((family, *model.aliases), family))

    def remove(self, name: str) -> M:
        model = self.exact(name)
        del self._models[model.name]
        del self._weights[model.name]
        self._names = {k: v for k, v in self._names.items() if v != model.name}
        family = model.config.family
        if family is not None and not self._members(family):
            self._families = {k: v for k, v in self._families.items() if v != family}
        return model

    def exact(self, name: str) -> M:
        """The one model `name` means without routing: "name@version", an unversioned
        name or alias, or a versioned name with only one version left (unload, info)."""
        if name in self._names:
            return self._models[self._names[name]]
        family = self._families.get(name)
        if family is None:
            raise ModelNotFoundError(name, sorted(self.names()))
        members = self._members(family)
        if len(members) != 1:
            pins = ", ".join(m.name for m in members)
            raise ConfigError(f"model {name!r} has several versions; name one: {pins}")
        return members[0]

    def resolve(
        self,
        name: str | None,
        prefer: Callable[[M], bool] | None = None,
        key: str | None = None,
    ) -> M:
        """`None` (no model named by the caller) means the default: the first loaded one
        that `prefer` accepts (a reranker for a rerank call), else the first loaded. A
        versioned name picks its version by weight for `key` (None: one fixed key)."""
        model = self._exact_or_default(name, prefer)
        family = model.config.family
        if family is None or (name is not None and name in self._names):
            return model  # unversioned, or pinned: never rerouted
        return self.route(family, key)

    def _exact_or_default(self, name: str | None, prefer: Callable[[M], bool] | None) -> M:
        if name is None and prefer is not None:
            for model in self._models.values():
                if prefer(model):
                    return model
        if name is not None and name in self._families:
            return self._members(self._families[name])[0]
        key = next(iter(self._models), None) if name is None else self._names.get(name)
        if key is None:
            raise ModelNotFoundError(name or "(default)", sorted(self.names()))
        return self._models[key]

    def route(self, family: str, key: str | None) -> M:
        """The version of `family` that `key` is assigned to by the current weights."""
        members = {m.config.served_version: m for m in self._members(family)}
        chosen = choose([(v, self._weights[m.name]) for v, m in members.items()], key or "")
        if chosen is None:
            raise NoWorkerError(
                f"no version of model {family!r} has a weight above 0; pin one "
                f"({', '.join(m.name for m in members.values())}) or set weights"
            )
        return members[chosen]

    def family_of(self, name: str) -> str:
        """The versioned name `name` (the name or an alias) routes among."""
        family = self._families.get(name)
        if family is not None:
            return family
        if name in self._names:
            raise ConfigError(
                f"model {name!r} is not a name with versions: weights route a name among "
                "its versions ([[models]] entries sharing it, each with its 'version')"
            )
        raise ModelNotFoundError(name, sorted(self.names()))

    def weights(self, family: str) -> dict[str, float]:
        """Each version's weight, in load order; a versioned name or alias."""
        name = self.family_of(family)
        return {m.config.served_version: self._weights[m.name] for m in self._members(name)}

    def families(self) -> list[str]:
        """The versioned names, in load order."""
        return list(
            dict.fromkeys(m.config.family for m in self._models.values() if m.config.family)
        )

    def set_weights(self, family: str, given: Mapping[str, object]) -> dict[str, float]:
        """Validated (routing.check_weights) and applied at once; returns them all."""
        current = self.weights(family)
        checked = check_weights(self._families[family], given, list(current))
        for model in self._members(self._families[family]):
            self._weights[model.name] = checked[model.config.served_version]
        return checked

    def weight_of(self, model: M) -> float:
        return self._weights[model.name]

    def replace(self, models: Sequence[M], weights: Mapping[str, float] | None = None) -> None:
        """Install exactly `models`, in this order (a reload's outcome); `weights` by
        served name, else each model's own (`add`)."""
        self._models, self._names, self._families, self._weights = {}, {}, {}, {}
        for model in models:
            self.add(model, (weights or {}).get(model.name))


def _exact_aliases(model: _Registered) -> tuple[str, ...]:
    """A versioned model's aliases route (they are its name's); others' are exact."""
    return () if model.config.family is not None else model.aliases


class _Reloadable(_Registered, Protocol):
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
