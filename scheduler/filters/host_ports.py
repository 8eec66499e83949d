"""host-ports: none of the request's host-mode published ports is in use on the node.

Ingress (routing mesh) ports are not the scheduler's concern; only host-mode ports bind
the node's own address, so two tasks publishing the same one cannot share a node.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from scheduler.filters.base import FilterBase
from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest, PortRequest
from scheduler.units import nodes_phrase


def _first_conflict(request: PlacementRequest, node: NodeView) -> str:
    for port in request.host_ports:
        if port in node.host_ports_in_use:
            return str(PortRequest(*port))
    return ""


class HostPortsFilter(FilterBase):
    name = "host-ports"
    dynamic = True

    def check(self, request: PlacementRequest, node: NodeView) -> bool:
        if not request.host_ports:
            return True
        in_use = node.host_ports_in_use
        return not any(port in in_use for port in request.host_ports)

    def explain(self, request: PlacementRequest, count: int) -> str:
        ports = ", ".join(str(PortRequest(*port)) for port in request.host_ports)
        return f"{nodes_phrase(count, 'has', 'have')} host port {ports} in use"

    def explain_failures(
        self, request: PlacementRequest, nodes: Sequence[NodeView]
    ) -> list[tuple[int, str]]:
        counts = Counter(_first_conflict(request, node) for node in nodes)
        return [
            (count, f"{nodes_phrase(count, 'has', 'have')} host port {port} in use")
            for port, count in counts.items()
        ]
