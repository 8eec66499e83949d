"""The filter contract, and a base class with the optional extras.

A filter answers one question about one node for one request: could this task run there?
The protocol is three members (the shape of SwarmKit's filters, one file each like classic
Swarm's):

* `name`: its registry name, used in configuration;
* `check(request, node) -> bool`: True when the node passes;
* `explain(request, count) -> str`: the phrase for `count` failing nodes, e.g.
  "2 nodes lack 512 MiB memory".

Two optional members let the pipeline go faster and explain better; `FilterBase` gives
safe defaults, and a plain protocol implementation is treated the same way:

* `dynamic` (default True): False promises that the answer depends only on the request
  and on node fields that a pass never changes (status, labels, platform...), so the
  pipeline computes it once per pass and shares it between requests. True means it may
  depend on what the pass has placed (resources, ports, counts), so the pipeline re-checks
  a node whenever it receives a task.
* `cache_key(request)`: for a static filter, the part of the request its answer depends
  on (requests with equal keys share one computation). None: no sharing.
* `explain_failures(request, nodes) -> list[(count, phrase)]`: a finer breakdown, such as
  "1 node not available (down); 3 nodes not available (drained)".

Filters must depend only on the request and the one node they are given.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Protocol, runtime_checkable

from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest


@runtime_checkable
class Filter(Protocol):
    """What the pipeline needs from a filter."""

    name: str

    def check(self, request: PlacementRequest, node: NodeView) -> bool: ...

    def explain(self, request: PlacementRequest, count: int) -> str: ...


class FilterBase:
    """Convenience base: dynamic by default, no sharing, one phrase for all failures."""

    name: str = ""
    dynamic: bool = True

    def check(self, request: PlacementRequest, node: NodeView) -> bool:
        raise NotImplementedError

    def explain(self, request: PlacementRequest, count: int) -> str:
        raise NotImplementedError

    def cache_key(self, request: PlacementRequest) -> Hashable | None:
        return None

    def explain_failures(
        self, request: PlacementRequest, nodes: Sequence[NodeView]
    ) -> list[tuple[int, str]]:
        return [(len(nodes), self.explain(request, len(nodes)))]

    def __repr__(self) -> str:
        return f"<filter {self.name}>"


def is_dynamic(filter_: Filter) -> bool:
    """A filter without the `dynamic` attribute is assumed to be dynamic (the safe side)."""
    return bool(getattr(filter_, "dynamic", True))


def cache_key_of(filter_: Filter, request: PlacementRequest) -> Hashable | None:
    method = getattr(filter_, "cache_key", None)
    return None if method is None else method(request)


def explain_failures_of(
    filter_: Filter, request: PlacementRequest, nodes: Sequence[NodeView]
) -> list[tuple[int, str]]:
    method = getattr(filter_, "explain_failures", None)
    if method is None:
        return [(len(nodes), filter_.explain(request, len(nodes)))]
    result: list[tuple[int, str]] = method(request, nodes)
    return result
