"""The strategy contract: order the feasible nodes for a request, best first.

A strategy gives each node a *key*: smaller is better, and equal keys are broken by node
id (the pipeline does that, so a strategy never needs to). `rank` is the plain sorted form
of the same order, for callers that want a list; the pipeline keeps the keys in a heap
instead, and recomputes a node's key only when a placement changes that node.

`keys_only_grow` tells the pipeline how lazy it may be. True promises that a node's key
never gets smaller as tasks land on it (spread: more tasks, larger key), so a stale key in
the heap is never better than the truth and can be refreshed when it reaches the top.
False (binpack: fuller is better) makes each heap catch up with the log of changed nodes
before it is used, re-keying them first. Without the attribute, False is assumed.

`key_scope(request, *, service_is_new)` (optional) lets groups share work: requests with
equal scopes must get equal keys on every node, so the pipeline builds one heap and copies
it. `service_is_new` is True when the request's service has no task and no recent failure
on any node of the pass. None, or no such method: no sharing.

Factories registered under `shoal.strategies` are called as `factory(seed=seed)`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol, runtime_checkable

from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest


@runtime_checkable
class Strategy(Protocol):
    name: str

    def key(self, request: PlacementRequest, node: NodeView) -> Any: ...

    def rank(self, request: PlacementRequest, nodes: Sequence[NodeView]) -> list[NodeView]: ...


class StrategyBase:
    name: str = ""
    keys_only_grow: bool = False

    def key(self, request: PlacementRequest, node: NodeView) -> Any:
        raise NotImplementedError

    def key_scope(self, request: PlacementRequest, *, service_is_new: bool) -> Hashable | None:
        return None

    def rank(self, request: PlacementRequest, nodes: Sequence[NodeView]) -> list[NodeView]:
        """All of `nodes`, best first (the order the pipeline would fill them)."""
        return sorted(nodes, key=lambda node: (self.key(request, node), node.id))

    def __repr__(self) -> str:
        return f"<strategy {self.name}>"
