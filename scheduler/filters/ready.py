"""ready: the node is up (its heartbeat key exists) and its availability is `active`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

from scheduler.filters.base import FilterBase
from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest
from scheduler.units import count_nodes

_WHY = {"drain": "drained", "pause": "paused"}


def _reason(node: NodeView) -> str:
    if not node.ready:
        return "down"
    return _WHY.get(node.availability, node.availability)


class ReadyFilter(FilterBase):
    name = "ready"
    dynamic = False

    def check(self, request: PlacementRequest, node: NodeView) -> bool:
        return node.ready and node.availability == "active"

    def cache_key(self, request: PlacementRequest) -> Hashable:
        return ()

    def explain(self, request: PlacementRequest, count: int) -> str:
        return f"{count_nodes(count)} not available"

    def explain_failures(
        self, request: PlacementRequest, nodes: Sequence[NodeView]
    ) -> list[tuple[int, str]]:
        counts = Counter(_reason(node) for node in nodes)
        return [
            (count, f"{count_nodes(count)} not available ({why})") for why, count in counts.items()
        ]
