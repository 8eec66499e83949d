"""random: a seeded, reproducible pseudo-random choice among the feasible nodes.

A node's key is a hash of the seed, the service, the node id and the node's task count:
the same seed, nodes and requests give the same placement in every process (no Python
`hash()`, which is salted per process), and a node draws a fresh key each time it
receives a task.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable

from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest
from scheduler.strategies.base import StrategyBase

_MASK = (1 << 64) - 1


def _mix(value: int) -> int:
    """splitmix64's finaliser: spreads the bits of `value` over 64 bits."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


class RandomStrategy(StrategyBase):
    name = "random"
    # Keys are arbitrary, so a stale one is as good a draw as a fresh one: being lazy
    # changes which random order is used, never its reproducibility.
    keys_only_grow = True

    def __init__(self, *, seed: int | None = None) -> None:
        self.seed = 0 if seed is None else seed

    def key_scope(self, request: PlacementRequest, *, service_is_new: bool) -> Hashable:
        return request.service

    def key(self, request: PlacementRequest, node: NodeView) -> int:
        node_hash = zlib.crc32(node.id.encode())
        service_hash = zlib.crc32(request.service.encode())
        return _mix(
            (self.seed * 0x100000001B3)
            ^ (node_hash << 32)
            ^ service_hash
            ^ (node.total_tasks << 17)
        )
