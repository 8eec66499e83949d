"""resources: the request's CPU and memory reservations fit what the node has left.

"Left" is capacity minus the reservations of its tasks, including those placed earlier
in the same pass. Limits are not the scheduler's business; reservations are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from scheduler.filters.base import FilterBase
from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest
from scheduler.units import format_bytes, format_cpus, nodes_phrase


def _missing(request: PlacementRequest, node: NodeView) -> tuple[bool, bool]:
    """(lacks CPU, lacks memory)."""
    want, have, used = request.resources, node.capacity, node.reserved
    return (
        want.nano_cpus > 0 and used.nano_cpus + want.nano_cpus > have.nano_cpus,
        want.memory_bytes > 0 and used.memory_bytes + want.memory_bytes > have.memory_bytes,
    )


def _what(request: PlacementRequest, cpu: bool, memory: bool) -> str:
    parts = []
    if cpu:
        parts.append(format_cpus(request.resources.nano_cpus))
    if memory:
        parts.append(f"{format_bytes(request.resources.memory_bytes)} memory")
    return " and ".join(parts)


class ResourcesFilter(FilterBase):
    name = "resources"
    dynamic = True

    def check(self, request: PlacementRequest, node: NodeView) -> bool:
        want = request.resources
        if want.nano_cpus == 0 and want.memory_bytes == 0:
            return True
        used, have = node.reserved, node.capacity
        return (used.nano_cpus + want.nano_cpus <= have.nano_cpus or want.nano_cpus == 0) and (
            used.memory_bytes + want.memory_bytes <= have.memory_bytes or want.memory_bytes == 0
        )

    def explain(self, request: PlacementRequest, count: int) -> str:
        want = request.resources
        what = _what(request, want.nano_cpus > 0, want.memory_bytes > 0)
        return f"{nodes_phrase(count, 'lacks', 'lack')} {what}"

    def explain_failures(
        self, request: PlacementRequest, nodes: Sequence[NodeView]
    ) -> list[tuple[int, str]]:
        counts = Counter(_missing(request, node) for node in nodes)
        return [
            (count, f"{nodes_phrase(count, 'lacks', 'lack')} {_what(request, cpu, memory)}")
            for (cpu, memory), count in counts.items()
        ]
