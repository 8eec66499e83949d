"""max-replicas: the node runs fewer than `max_replicas_per_node` tasks of the service.

Zero means unlimited (swarm mode's `--replicas-max-per-node`).
"""

from __future__ import annotations

from scheduler.filters.base import FilterBase
from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest
from scheduler.units import nodes_phrase


class MaxReplicasFilter(FilterBase):
    name = "max-replicas"
    dynamic = True

    def check(self, request: PlacementRequest, node: NodeView) -> bool:
        limit = request.max_replicas_per_node
        return limit <= 0 or node.tasks_by_service.get(request.service, 0) < limit

    def explain(self, request: PlacementRequest, count: int) -> str:
        limit = request.max_replicas_per_node
        tasks = "task" if limit == 1 else "tasks"
        return (
            f"{nodes_phrase(count, 'already runs', 'already run')} {limit} {tasks} "
            f"of {request.service} (max {limit} per node)"
        )
