"""affinity: co-location rules against what already runs on the node.

`affinity:service==db` wants a node running a task of `db`; `affinity:service!=web` wants
one that does not (anti-affinity: with the service's own name, one task per node);
`affinity:image==redis*` looks at the images of the node's tasks. Tasks placed earlier in
the pass count, so this filter is dynamic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from scheduler.filters.base import FilterBase
from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest
from scheduler.units import nodes_phrase


def _first_unmet(request: PlacementRequest, node: NodeView) -> str:
    for affinity in request.parsed_affinities:
        if not affinity.matches(node):
            return affinity.text
    return ""


class AffinityFilter(FilterBase):
    name = "affinity"
    dynamic = True

    def check(self, request: PlacementRequest, node: NodeView) -> bool:
        return all(affinity.matches(node) for affinity in request.parsed_affinities)

    def explain(self, request: PlacementRequest, count: int) -> str:
        rules = ", ".join(request.affinities)
        return f"{nodes_phrase(count, 'does', 'do')} not satisfy {rules}"

    def explain_failures(
        self, request: PlacementRequest, nodes: Sequence[NodeView]
    ) -> list[tuple[int, str]]:
        counts = Counter(_first_unmet(request, node) for node in nodes)
        return [
            (count, f"{nodes_phrase(count, 'does', 'do')} not satisfy {rule}")
            for rule, count in counts.items()
        ]
