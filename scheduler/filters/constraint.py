"""constraint: every placement constraint of the request holds on the node.

Both syntaxes (swarm mode's `node.labels.zone==a`, classic Swarm's
`constraint:region==us-*`) are parsed by `scheduler.constraints`. Soft constraints are
checked here like hard ones; the pipeline drops them for a task when no node passes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

from scheduler.filters.base import FilterBase
from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest
from scheduler.units import nodes_phrase


def _first_unmet(request: PlacementRequest, node: NodeView) -> str:
    for constraint in request.parsed_constraints:
        if not constraint.matches(node):
            return constraint.text
    return ""


class ConstraintFilter(FilterBase):
    name = "constraint"
    dynamic = False

    def check(self, request: PlacementRequest, node: NodeView) -> bool:
        return all(constraint.matches(node) for constraint in request.parsed_constraints)

    def cache_key(self, request: PlacementRequest) -> Hashable:
        return request.constraints

    def explain(self, request: PlacementRequest, count: int) -> str:
        rules = ", ".join(request.constraints)
        return f"{nodes_phrase(count, 'does', 'do')} not satisfy {rules}"

    def explain_failures(
        self, request: PlacementRequest, nodes: Sequence[NodeView]
    ) -> list[tuple[int, str]]:
        counts = Counter(_first_unmet(request, node) for node in nodes)
        return [
            (count, f"{nodes_phrase(count, 'does', 'do')} not satisfy {rule}")
            for rule, count in counts.items()
        ]
