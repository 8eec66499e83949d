"""Ranked candidate nodes for one group of alike requests, in lazy heaps.

This is the speed of the scheduler; the rules are elsewhere. A *group* is every request
of a pass with the same feasibility key (the replicas of one service). Its candidates are
the nodes that pass the static filters, computed once; they sit in a heap keyed by the
strategy, and the dynamic filters (resources, ports, counts) are checked only on the node
at the top, when it is about to be chosen.

Each node has a version, bumped by every placement on it. A heap entry remembers the
version it was keyed at, so:

* a stale entry reaching the top is re-keyed and pushed back (lazy invalidation). That is
  exact when keys only grow (spread); otherwise (binpack) each heap first catches up with
  the log of nodes changed since it was last used;
* a node failing a dynamic filter is *parked*: out of the heap, watched, and pushed back
  when a placement changes it (a node can start to pass, e.g. `affinity:service==db`
  once db lands there).

Placement preferences (`spread=node.labels.zone`) make the candidates a tree: a branch
heap orders label values by how many tasks of the service they hold, a leaf heap orders
the nodes of one value. A pick takes the emptiest value that still has a fitting node.

Groups whose keys are equal on every node (`Strategy.key_scope`: for spread, all services
with no task yet) share a template: one entry per node, re-keyed only for the nodes
changed since its last use, then copied and heapified at C speed. Each pick costs
O(log n) plus the stale entries it meets; requests whose keys cannot be shared pay one
strategy key per candidate node. See docs/benchmarks-scheduler.md for the figures.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Sequence
from typing import Any

from scheduler.constraints import Preference
from scheduler.filters.base import Filter
from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest
from scheduler.strategies.base import Strategy

PARKED = -1  # `pushed[idx]` for a node that has no entry in the heap

# Heap entries: (strategy key, node id for ties, node version when keyed, node index).
_Heap = list[tuple[Any, str, int, int]]
# A shared heap's template: entry per member, version keyed per member, log position.
_Template = tuple[dict[int, tuple[Any, str, int, int]], dict[int, int], int]


class PassState:
    """The mutable state of one pass: node views, versions, and who watches what."""

    def __init__(self, nodes: list[NodeView], strategy: Strategy) -> None:
        self.nodes = nodes
        self.index = {node.id: idx for idx, node in enumerate(nodes)}
        if len(self.index) != len(nodes):
            raise ValueError("two node views have the same id")
        self.strategy = strategy
        self.lazy = bool(getattr(strategy, "keys_only_grow", False))
        self.versions = [0] * len(nodes)
        self.changed: list[int] = []
        self.watchers: dict[int, list[Leaf]] = {}
        self.trees_by_service: dict[str, list[CandidateTree]] = {}
        # Services with a task or a recent failure somewhere: see `Strategy.key_scope`.
        self.services_present: set[str] = set()
        for node in nodes:
            self.services_present.update(s for s, n in node.tasks_by_service.items() if n > 0)
            self.services_present.update(s for s, n in node.recent_failures.items() if n > 0)
        self.templates: dict[Hashable, _Template] = {}

    def template(
        self, share: Hashable, request: PlacementRequest, members: Sequence[int]
    ) -> tuple[_Heap, dict[int, int]]:
        """A fresh heap for `members` keyed for `request`, shared by every group with `share`.

        The template keeps one entry per member; the members changed since its last use
        are re-keyed, and the rest is copied and heapified at C speed.
        """
        found = self.templates.get(share)
        if found is None:
            heap, pushed = _build_heap(self, request, members)
            self.templates[share] = ({e[3]: e for e in heap}, pushed.copy(), len(self.changed))
            return heap, pushed
        entries, versions_pushed, position = found
        key, nodes, versions, changed = self.strategy.key, self.nodes, self.versions, self.changed
        for idx in changed[position:]:
            if idx in versions_pushed and versions_pushed[idx] != versions[idx]:
                node = nodes[idx]
                entries[idx] = (key(request, node), node.id, versions[idx], idx)
                versions_pushed[idx] = versions[idx]
        self.templates[share] = (entries, versions_pushed, len(changed))
        heap = list(entries.values())
        heapq.heapify(heap)
        return heap, versions_pushed.copy()

    def reserve(self, request: PlacementRequest, idx: int) -> None:
        """Record a placement: update the node and tell whoever depends on it."""
        self.nodes[idx].reserve(request)
        self.services_present.add(request.service)
        self.versions[idx] += 1
        self.changed.append(idx)
        for leaf in self.watchers.pop(idx, ()):
            leaf.wake(idx)
        for tree in self.trees_by_service.get(request.service, ()):
            tree.count_task(idx)


class _Child:
    """What a branch needs from its children: a count, a version, an entry version."""

    parent: Branch | None
    slot: int
    value: str
    count: int
    version: int
    entry_version: int


class Leaf(_Child):
    """A heap of nodes, checked against the dynamic filters when they reach the top."""

    def __init__(
        self,
        state: PassState,
        *,
        request: PlacementRequest,
        dynamic: Sequence[Filter],
        members: Sequence[int],
        share: Hashable | None = None,
    ) -> None:
        self.state = state
        self.request = request
        self.dynamic = tuple(dynamic)
        if share is None:
            self.heap, self.pushed = _build_heap(state, request, members)
        else:
            # Same members and same keys as an earlier group: copy its heap (C speed).
            self.heap, self.pushed = state.template(share, request, members)
        self.log_position = len(state.changed)
        self.parent = None
        self.slot = 0
        self.value = ""
        self.count = 0
        self.version = 0
        self.entry_version = 0

    def _push(self, idx: int) -> None:
        node = self.state.nodes[idx]
        version = self.state.versions[idx]
        heapq.heappush(
            self.heap, (self.state.strategy.key(self.request, node), node.id, version, idx)
        )
        self.pushed[idx] = version

    def _catch_up(self) -> None:
        """For strategies whose keys may shrink: re-key every member changed since."""
        changed, pushed, versions = self.state.changed, self.pushed, self.state.versions
        for position in range(self.log_position, len(changed)):
            idx = changed[position]
            seen = pushed.get(idx)
            if seen is not None and seen != versions[idx]:
                self._push(idx)
        self.log_position = len(changed)

    def pick(self) -> int | None:
        """The best member passing the dynamic filters, taken out of the heap; or None."""
        state = self.state
        if not state.lazy:
            self._catch_up()
        heap, pushed, versions, nodes = self.heap, self.pushed, state.versions, state.nodes
        request, dynamic, key = self.request, self.dynamic, state.strategy.key
        while heap:
            _, node_id, version, idx = heap[0]
            if pushed[idx] != version:  # superseded by a newer entry for the same node
                heapq.heappop(heap)
                continue
            node = nodes[idx]
            current = versions[idx]
            if version != current:  # stale key: re-key, and look again
                heapq.heapreplace(heap, (key(request, node), node_id, current, idx))
                pushed[idx] = current
                continue
            heapq.heappop(heap)
            pushed[idx] = PARKED
            for filter_ in dynamic:
                if not filter_.check(request, node):
                    state.watchers.setdefault(idx, []).append(self)
                    break
            else:
                return idx
        return None

    def put_back(self, idx: int) -> None:
        """After a placement on `idx` (taken by `pick`): back in, with its new key."""
        self._push(idx)

    def wake(self, idx: int) -> None:
        """A parked member changed: give it another chance."""
        if self.pushed.get(idx) != PARKED:
            return
        self._push(idx)
        if self.parent is not None and self.entry_version == PARKED:
            self.parent.wake_child(self)


class Branch(_Child):
    """A heap of label values (children), the one with fewest of the service's tasks first."""

    def __init__(self, children: Sequence[Leaf | Branch]) -> None:
        self.children = list(children)
        self.heap: list[tuple[int, str, int, int]] = []
        for slot, child in enumerate(self.children):
            child.parent = self
            child.slot = slot
            child.entry_version = child.version
            self.heap.append((child.count, child.value, child.version, slot))
        heapq.heapify(self.heap)
        self.parent = None
        self.slot = 0
        self.value = ""
        self.count = sum(child.count for child in self.children)
        self.version = 0
        self.entry_version = 0

    def pick(self) -> int | None:
        heap, children = self.heap, self.children
        while heap:
            _, value, version, slot = heap[0]
            child = children[slot]
            if child.entry_version != version:
                heapq.heappop(heap)
                continue
            if version != child.version:
                heapq.heapreplace(heap, (child.count, value, child.version, slot))
                child.entry_version = child.version
                continue
            idx = child.pick()
            if idx is not None:
                return idx
            heapq.heappop(heap)
            child.entry_version = PARKED
        return None

    def wake_child(self, child: Leaf | Branch) -> None:
        if child.entry_version != PARKED:
            return
        heapq.heappush(self.heap, (child.count, child.value, child.version, child.slot))
        child.entry_version = child.version
        if self.parent is not None and self.entry_version == PARKED:
            self.parent.wake_child(self)


class CandidateTree:
    """The candidates of one group: a single leaf, or a tree when preferences apply."""

    def __init__(
        self,
        state: PassState,
        *,
        request: PlacementRequest,
        dynamic: Sequence[Filter],
        members: Sequence[int],
        members_key: Hashable | None = None,
    ) -> None:
        """`members_key` names the member set (None: unique), for sharing initial heaps."""
        self.state = state
        self.service = request.service
        self.leaf_of: dict[int, Leaf] = {}
        self.path_of: dict[int, tuple[_Child, ...]] = {}
        preferences = request.parsed_preferences
        self.root: Leaf | Branch
        if preferences:
            self.root = self._build(
                request=request, dynamic=dynamic, members=members, levels=preferences
            )
            self._index(self.root, ())
            state.trees_by_service.setdefault(self.service, []).append(self)
        else:
            share = None
            scope = _key_scope(state, request)
            if members_key is not None and scope is not None:
                share = (members_key, scope)
            self.root = Leaf(state, request=request, dynamic=dynamic, members=members, share=share)

    def _build(
        self,
        *,
        request: PlacementRequest,
        dynamic: Sequence[Filter],
        members: Sequence[int],
        levels: Sequence[Preference],
    ) -> Leaf | Branch:
        """One level per preference: group `members` by their value for `levels[0]`."""
        if not levels:
            return Leaf(self.state, request=request, dynamic=dynamic, members=members)
        nodes = self.state.nodes
        by_value: dict[str, list[int]] = {}
        for idx in members:
            by_value.setdefault(levels[0].value_of(nodes[idx]), []).append(idx)
        children: list[Leaf | Branch] = []
        for value in sorted(by_value):
            group = by_value[value]
            child = self._build(request=request, dynamic=dynamic, members=group, levels=levels[1:])
            child.value = value
            child.count = sum(nodes[idx].tasks_by_service.get(self.service, 0) for idx in group)
            children.append(child)
        return Branch(children)

    def _index(self, step: Leaf | Branch, path: tuple[_Child, ...]) -> None:
        """Remember, for each member node, its leaf and the steps above it."""
        if isinstance(step, Leaf):
            for idx in step.pushed:
                self.leaf_of[idx] = step
                self.path_of[idx] = path
            return
        for child in step.children:
            self._index(child, (*path, child))

    def pick(self) -> int | None:
        return self.root.pick()

    def put_back(self, idx: int) -> None:
        leaf = self.leaf_of.get(idx)
        if leaf is None:
            assert isinstance(self.root, Leaf)
            leaf = self.root
        leaf.put_back(idx)

    def count_task(self, idx: int) -> None:
        """A task of this tree's service landed on `idx`: its values now hold one more."""
        for step in self.path_of.get(idx, ()):
            step.count += 1
            step.version += 1


def _key_scope(state: PassState, request: PlacementRequest) -> Hashable | None:
    """The strategy's `key_scope`, if it has one: equal scopes, equal keys on every node."""
    method = getattr(state.strategy, "key_scope", None)
    if method is None:
        return None
    scope: Hashable | None = method(
        request, service_is_new=request.service not in state.services_present
    )
    return scope


def _build_heap(
    state: PassState, request: PlacementRequest, members: Sequence[int]
) -> tuple[_Heap, dict[int, int]]:
    key, nodes, versions = state.strategy.key, state.nodes, state.versions
    heap: _Heap = []
    append = heap.append
    for idx in members:
        node = nodes[idx]
        append((key(request, node), node.id, versions[idx], idx))
    heapq.heapify(heap)
    return heap, {idx: versions[idx] for idx in members}
