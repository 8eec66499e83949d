"""The pipeline: filters, then a strategy, over many requests in one pass.

`Pipeline(filters, strategy).place(requests, nodes)` is a pure function of its inputs:
it copies the node views, places the requests in the order given, updating the copies
after each placement so that later requests see earlier ones, and returns a
`PlacementResult`. No store, no clock, no I/O.

Requests with the same feasibility key (the replicas of a service) form a *group* and
share one computation of the static filters and one heap of candidates (see
`scheduler.candidates`). A request whose soft rules (`==~`, `!=~`) no node satisfies
falls back to the same request without them. A request no node takes gets a one-sentence
explanation: for each node, the first filter it fails, counted, most frequent first.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

from scheduler.candidates import CandidateTree, PassState
from scheduler.constraints import ConstraintError
from scheduler.filters.base import Filter, cache_key_of, explain_failures_of, is_dynamic
from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest
from scheduler.strategies.base import Strategy


@dataclass
class PlacementResult:
    """What a pass decided. `nodes` are the views after the pass."""

    placements: list[tuple[PlacementRequest, str]] = field(default_factory=list)
    unplaced: list[tuple[PlacementRequest, str]] = field(default_factory=list)
    nodes: list[NodeView] = field(default_factory=list)

    @property
    def assignments(self) -> dict[str, str]:
        """Request key (task id, or service.slot) -> node id."""
        return {request.key: node_id for request, node_id in self.placements}


class Pipeline:
    """An ordered list of filters and one strategy. Reusable: it keeps no pass state."""

    def __init__(self, filters: Sequence[Filter], strategy: Strategy) -> None:
        self.filters = tuple(filters)
        self.strategy = strategy
        self.static = tuple(f for f in self.filters if not is_dynamic(f))
        self.dynamic = tuple(f for f in self.filters if is_dynamic(f))

    def __repr__(self) -> str:
        names = ", ".join(f.name for f in self.filters)
        return f"Pipeline(filters=[{names}], strategy={self.strategy.name})"

    def place(
        self, requests: Iterable[PlacementRequest], nodes: Iterable[NodeView]
    ) -> PlacementResult:
        """Place `requests` in order onto copies of `nodes`."""
        run = _Pass(self, [node.copy() for node in nodes])
        result = PlacementResult(nodes=run.state.nodes)
        for request in requests:
            node_id = run.place_one(request)
            if node_id is None:
                result.unplaced.append((request, run.explain(request)))
            else:
                result.placements.append((request, node_id))
        return result


class _Group:
    """The requests of a pass that share a feasibility key."""

    def __init__(self, run: _Pass, request: PlacementRequest) -> None:
        self.run = run
        self.request = request
        self.relaxed_request: PlacementRequest | None = None
        self.error: str | None = None
        self.strict: CandidateTree | None = None
        self.relaxed: CandidateTree | None = None
        self.explanation: tuple[int, str] | None = None
        try:
            _ = request.parsed_constraints, request.parsed_affinities
            _ = request.parsed_preferences
        except ConstraintError as exc:
            self.error = str(exc)
            return
        if request.has_soft_rules:
            self.relaxed_request = request.hard_only()
        self.strict = run.tree(request)

    def pick(self) -> tuple[CandidateTree, int] | None:
        if self.strict is None:
            return None
        idx = self.strict.pick()
        if idx is not None:
            return self.strict, idx
        if self.relaxed_request is None:
            return None
        if self.relaxed is None:
            self.relaxed = self.run.tree(self.relaxed_request)
        idx = self.relaxed.pick()
        return None if idx is None else (self.relaxed, idx)


class _Pass:
    def __init__(self, pipeline: Pipeline, nodes: list[NodeView]) -> None:
        self.pipeline = pipeline
        self.state = PassState(nodes, pipeline.strategy)
        self.groups: dict[Hashable, _Group] = {}
        self.static_sets: dict[tuple[int, Hashable], frozenset[int]] = {}
        self.members: dict[tuple[Hashable, ...], list[int]] = {}

    def group(self, request: PlacementRequest) -> _Group:
        key = request.feasibility_key
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group(self, request)
        return group

    def place_one(self, request: PlacementRequest) -> str | None:
        picked = self.group(request).pick()
        if picked is None:
            return None
        tree, idx = picked
        self.state.reserve(request, idx)
        tree.put_back(idx)
        return self.state.nodes[idx].id

    def tree(self, request: PlacementRequest) -> CandidateTree:
        members, members_key = self.static_members(request)
        return CandidateTree(
            self.state,
            request=request,
            dynamic=self.pipeline.dynamic,
            members=members,
            members_key=members_key,
        )

    def static_members(self, request: PlacementRequest) -> tuple[list[int], Hashable | None]:
        """The nodes passing every static filter, shared by requests with equal keys.

        Also returns the key naming that set, or None when it is not shared.
        """
        nodes, static = self.state.nodes, self.pipeline.static
        if request.node_id is not None:
            idx = self.state.index.get(request.node_id)
            if idx is None or not all(f.check(request, nodes[idx]) for f in static):
                return [], None
            return [idx], None
        keys = tuple(cache_key_of(f, request) for f in static)
        if None in keys:
            members = [
                idx for idx, node in enumerate(nodes) if all(f.check(request, node) for f in static)
            ]
            return members, None
        found = self.members.get(keys)
        if found is None:
            sets = [self._static_set(position, f, request) for position, f in enumerate(static)]
            sets.sort(key=len)
            passing = set(range(len(nodes))).intersection(*sets) if sets else range(len(nodes))
            found = self.members[keys] = sorted(passing)
        return found, keys

    def _static_set(
        self, position: int, filter_: Filter, request: PlacementRequest
    ) -> frozenset[int]:
        key = (position, cache_key_of(filter_, request))
        found = self.static_sets.get(key)
        if found is None:
            found = self.static_sets[key] = frozenset(
                idx for idx, node in enumerate(self.state.nodes) if filter_.check(request, node)
            )
        return found

    def explain(self, request: PlacementRequest) -> str:
        """Why no node takes `request`, counted per first failing filter."""
        group = self.group(request)
        if group.error is not None:
            return group.error
        stamp = len(self.state.changed)
        if group.explanation is not None and group.explanation[0] == stamp:
            return group.explanation[1]
        text = explain(
            group.relaxed_request or group.request,
            nodes=self.state.nodes,
            filters=self.pipeline.filters,
        )
        group.explanation = (stamp, text)
        return text


def explain(
    request: PlacementRequest, *, nodes: Sequence[NodeView], filters: Sequence[Filter]
) -> str:
    """One sentence: "3 nodes not available (drained); 2 nodes lack 512 MiB memory".

    Each node is counted against the first filter it fails, in pipeline order; the
    phrases are sorted by count, most frequent first, ties in filter order.
    """
    if request.node_id is not None:
        nodes = [node for node in nodes if node.id == request.node_id]
        if not nodes:
            return f"node {request.node_id} is not in the cluster"
    if not nodes:
        return "no nodes in the cluster"
    failing: dict[int, list[NodeView]] = {}
    for node in nodes:
        for position, filter_ in enumerate(filters):
            if not filter_.check(request, node):
                failing.setdefault(position, []).append(node)
                break
    phrases: list[tuple[int, int, str]] = []
    for position in sorted(failing):
        for count, phrase in explain_failures_of(filters[position], request, failing[position]):
            phrases.append((-count, position, phrase))
    if not phrases:
        return "no suitable node"
    phrases.sort()
    return "; ".join(phrase for _, _, phrase in phrases)
