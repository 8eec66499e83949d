"""Filters and strategies by name: a built-in table, extended by entry points.

The built-ins are a table of `name -> "module:attribute"`, imported only when used (like
fsspec's registry). Third parties add theirs through the entry-point groups
`shoal.filters` and `shoal.strategies`, e.g. in their pyproject.toml:

    [project.entry-points."shoal.filters"]
    gpu = "shoal_gpu:GpuFilter"

A filter entry point names a class or function called with no arguments; a strategy's is
called as `factory(seed=seed)`. A name registered twice (a plugin shadowing a built-in,
or two plugins) is an error, never a silent override; an unknown name lists the known ones.
The registry reads the installed distributions on each call: there is no global state.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from scheduler.filters import DEFAULT_FILTERS
from scheduler.filters.base import Filter
from scheduler.pipeline import Pipeline
from scheduler.strategies import DEFAULT_STRATEGY
from scheduler.strategies.base import Strategy

FILTER_GROUP = "shoal.filters"
STRATEGY_GROUP = "shoal.strategies"
ALWAYS_FIRST = "ready"

BUILTIN_FILTERS: Mapping[str, str] = {
    "ready": "scheduler.filters.ready:ReadyFilter",
    "platform": "scheduler.filters.platform:PlatformFilter",
    "constraint": "scheduler.filters.constraint:ConstraintFilter",
    "affinity": "scheduler.filters.affinity:AffinityFilter",
    "max-replicas": "scheduler.filters.max_replicas:MaxReplicasFilter",
    "host-ports": "scheduler.filters.host_ports:HostPortsFilter",
    "resources": "scheduler.filters.resources:ResourcesFilter",
}
BUILTIN_STRATEGIES: Mapping[str, str] = {
    "spread": "scheduler.strategies.spread:SpreadStrategy",
    "binpack": "scheduler.strategies.binpack:BinpackStrategy",
    "random": "scheduler.strategies.random:RandomStrategy",
}


class RegistryError(LookupError):
    """An unknown, duplicate or broken filter or strategy name."""


def _import(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"cannot import {module_name!r} for {target!r}: {exc}") from exc
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


def _table(kind: str, group: str, builtins: Mapping[str, str]) -> dict[str, str | EntryPoint]:
    """Built-ins plus entry points of `group`; a name seen twice is an error."""
    table: dict[str, str | EntryPoint] = dict(builtins)
    for point in entry_points(group=group):
        known = table.get(point.name)
        if known is None:
            table[point.name] = point
            continue
        if isinstance(known, EntryPoint) and known.value == point.value:
            continue  # the same distribution found twice on sys.path
        where = f"built-in {known}" if isinstance(known, str) else f"entry point {known.value}"
        raise RegistryError(
            f"{kind} {point.name!r} is registered twice: {where} and entry point "
            f"{point.value} (group {group}); rename one of them"
        )
    return table


def _factory(kind: str, name: str, table: Mapping[str, str | EntryPoint]) -> Callable[..., Any]:
    target = table.get(name)
    if target is None:
        known = ", ".join(sorted(table))
        raise RegistryError(f"unknown {kind} {name!r}; known: {known}")
    if isinstance(target, str):
        found = _import(target)
    else:
        try:
            found = target.load()
        except (ImportError, AttributeError) as exc:
            raise RegistryError(
                f"{kind} {name!r}: cannot load entry point {target.value}: {exc}"
            ) from exc
    if not callable(found):
        raise RegistryError(f"{kind} {name!r} resolves to {found!r}, which is not callable")
    factory: Callable[..., Any] = found
    return factory


def filter_names() -> list[str]:
    """Every filter name that `load_filters` accepts."""
    return sorted(_table("filter", FILTER_GROUP, BUILTIN_FILTERS))


def strategy_names() -> list[str]:
    return sorted(_table("strategy", STRATEGY_GROUP, BUILTIN_STRATEGIES))


def load_filters(names: Sequence[str] | None = None) -> list[Filter]:
    """Instantiate filters by name, in order; `ready` is always first (added if missing).

    None gives `DEFAULT_FILTERS`.
    """
    wanted = list(DEFAULT_FILTERS if names is None else names)
    if len(set(wanted)) != len(wanted):
        twice = sorted({name for name in wanted if wanted.count(name) > 1})
        raise RegistryError(f"filter listed twice: {', '.join(twice)}")
    if ALWAYS_FIRST in wanted:
        wanted.remove(ALWAYS_FIRST)
    wanted.insert(0, ALWAYS_FIRST)
    table = _table("filter", FILTER_GROUP, BUILTIN_FILTERS)
    filters: list[Filter] = []
    for name in wanted:
        made = _factory("filter", name, table)()
        if not isinstance(made, Filter):
            raise RegistryError(
                f"filter {name!r} made {made!r}, which lacks name, check() or explain()"
            )
        filters.append(made)
    return filters


def load_strategy(name: str = DEFAULT_STRATEGY, *, seed: int | None = None) -> Strategy:
    """Instantiate a strategy by name; `seed` matters to `random` (and is passed to all)."""
    table = _table("strategy", STRATEGY_GROUP, BUILTIN_STRATEGIES)
    made = _factory("strategy", name, table)(seed=seed)
    if not isinstance(made, Strategy):
        raise RegistryError(f"strategy {name!r} made {made!r}, which lacks name, key() or rank()")
    return made


def load_pipeline(
    *,
    filters: Sequence[str] | None = None,
    strategy: str = DEFAULT_STRATEGY,
    seed: int | None = None,
) -> Pipeline:
    """The pipeline a configuration describes: filter names and a strategy name."""
    return Pipeline(load_filters(filters), load_strategy(strategy, seed=seed))
