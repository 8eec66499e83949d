"""spread: the node with the fewest tasks of this service, then the fewest tasks in all.

A node where this service failed recently (`recent_failures`, counted by the manager over
its own window) goes after the others once the count reaches `failure_threshold`, so a
crash-looping task stops landing on the same broken host. Placement preferences
(`spread=node.labels.zone`) are applied by the pipeline before this order: tasks are
spread over the label's values first, then over the nodes of the chosen value.
"""

from __future__ import annotations

from collections.abc import Hashable

from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest
from scheduler.strategies.base import StrategyBase


class SpreadStrategy(StrategyBase):
    name = "spread"
    # More tasks on a node only ever make its key larger.
    keys_only_grow = True

    def __init__(self, *, seed: int | None = None, failure_threshold: int = 5) -> None:
        del seed  # not random: accepted so every factory has one signature
        self.failure_threshold = failure_threshold

    def key_scope(self, request: PlacementRequest, *, service_is_new: bool) -> Hashable:
        # A service with no task and no failure anywhere keys every node as
        # (False, 0, total tasks): all new services share one heap.
        return ("new",) if service_is_new else ("service", request.service)

    def key(self, request: PlacementRequest, node: NodeView) -> tuple[bool, int, int]:
        service = request.service
        failures = node.recent_failures
        return (
            bool(failures) and failures.get(service, 0) >= self.failure_threshold,
            node.tasks_by_service.get(service, 0),
            node.total_tasks,
        )
