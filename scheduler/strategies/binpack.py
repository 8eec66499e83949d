"""binpack: the most used node that still fits, so whole nodes stay free.

"Used" is the reserved fraction of CPU plus that of memory (a dimension the node does not
report is left out), then the number of tasks, so that among nodes without reservations
an open node is still preferred to an empty one.
"""

from __future__ import annotations

from collections.abc import Hashable

from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest
from scheduler.strategies.base import StrategyBase


def used_fraction(node: NodeView) -> float:
    used = 0.0
    if node.capacity.nano_cpus > 0:
        used += node.reserved.nano_cpus / node.capacity.nano_cpus
    if node.capacity.memory_bytes > 0:
        used += node.reserved.memory_bytes / node.capacity.memory_bytes
    return used


class BinpackStrategy(StrategyBase):
    name = "binpack"
    # A fuller node has a *smaller* key: the pipeline must refresh keys eagerly.
    keys_only_grow = False

    def __init__(self, *, seed: int | None = None) -> None:
        del seed

    def key_scope(self, request: PlacementRequest, *, service_is_new: bool) -> Hashable:
        return ()  # the key does not depend on the request at all

    def key(self, request: PlacementRequest, node: NodeView) -> tuple[float, int]:
        return (-used_fraction(node), -node.total_tasks)
