"""Nodes: what agents report joined with what operators decide, and changing the latter.

A node is two keys: `nodes/<id>` (the agent's heartbeat, on its lease: present means
ready, gone means down) and `node-specs/<id>` (durable: role, availability, labels).
Operators change only the spec. Removing a node deletes its spec, and refuses while the
node is up unless forced, because a live agent would keep running its tasks unseen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from controlplane import keys
from controlplane.api.control import writes
from controlplane.api.control.errors import Ambiguous, Conflict, NotFound
from controlplane.api.control.ids import NODE_ID
from controlplane.api.control.view import ClusterView
from controlplane.models import Availability, NodeInfo, NodeRole, NodeSpec
from discovery import Compare, Delete, Store

KIND = "node"


class NodeStatus(StrEnum):
    READY = "ready"
    DOWN = "down"


class ManagerStatus(StrEnum):
    LEADER = "leader"
    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class NodeState:
    id: str
    info: NodeInfo | None  # None: down (or never heartbeated)
    spec: NodeSpec
    manager_status: ManagerStatus | None

    @property
    def status(self) -> NodeStatus:
        return NodeStatus.READY if self.info is not None else NodeStatus.DOWN


@dataclass(frozen=True, slots=True)
class NodeChange:
    """What `node update` may change; None / empty means "leave as is"."""

    availability: Availability | None = None
    role: NodeRole | None = None
    labels_add: Mapping[str, str] | None = None
    labels_remove: Sequence[str] = ()


def _state(view: ClusterView, node_id: str) -> NodeState:
    spec = view.node_specs.get(node_id) or NodeSpec(id=node_id)
    manager: ManagerStatus | None = None
    leader = view.leader
    if leader is not None and leader.manager_id == node_id:
        manager = ManagerStatus.LEADER
    elif node_id in view.managers:
        manager = ManagerStatus.REACHABLE
    elif spec.role is NodeRole.MANAGER:
        manager = ManagerStatus.UNREACHABLE
    return NodeState(id=node_id, info=view.nodes.get(node_id), spec=spec, manager_status=manager)


def list_nodes(view: ClusterView) -> list[NodeState]:
    ids = sorted(set(view.nodes) | set(view.node_specs))
    states = [_state(view, node_id) for node_id in ids]
    return sorted(states, key=lambda s: (s.info.hostname if s.info else "", s.id))


def find_node(view: ClusterView, ref: str) -> NodeState:
    """By id, then by hostname, then by unique id prefix."""
    ids = set(view.nodes) | set(view.node_specs)
    if ref in ids:
        return _state(view, ref)
    by_host = [node_id for node_id, info in view.nodes.items() if info.hostname == ref]
    if len(by_host) == 1:
        return _state(view, by_host[0])
    if len(by_host) > 1:
        raise Ambiguous(KIND, ref, by_host)
    prefixed = [node_id for node_id in ids if node_id.startswith(ref)]
    if len(prefixed) == 1:
        return _state(view, prefixed[0])
    if len(prefixed) > 1:
        raise Ambiguous(KIND, ref, prefixed)
    raise NotFound(KIND, ref)


def _id_of(view: ClusterView, ref: str) -> str:
    """The node id `ref` designates; an id the mirror has not seen yet is kept."""
    try:
        return find_node(view, ref).id
    except NotFound:
        if NODE_ID.match(ref):
            return ref  # perhaps joined a moment ago through another manager
        raise


async def update_node(
    store: Store, view: ClusterView, ref: str, change: NodeChange
) -> tuple[NodeSpec, int]:
    """Apply `change` to the node's spec (compare-and-swap); creates a missing spec."""
    node_id = _id_of(view, ref)
    key = keys.node_spec(node_id)
    if await store.get(key) is None:
        if await store.get(keys.node(node_id)) is None:
            raise NotFound(KIND, ref)
        # A node seen only by its heartbeat has no spec yet: start from the defaults.
        await writes.create(store, key, NodeSpec(id=node_id))

    def apply(spec: NodeSpec) -> NodeSpec:
        labels = dict(spec.labels)
        for name in change.labels_remove:
            labels.pop(name, None)
        labels.update(change.labels_add or {})
        updated = spec.model_copy(
            update={
                "availability": change.availability or spec.availability,
                "role": change.role or spec.role,
                "labels": labels,
            }
        )
        return spec if updated == spec else updated

    return await writes.modify(store, key, model=NodeSpec, change=apply, kind=KIND, ref=ref)


async def remove_node(store: Store, view: ClusterView, ref: str, *, force: bool) -> int:
    """Forget a node. A ready node is refused unless `force` (then its heartbeat key goes
    too, and the leader replaces its tasks elsewhere)."""
    node_id = _id_of(view, ref)
    spec_key, info_key = keys.node_spec(node_id), keys.node(node_id)
    for _ in range(writes.ATTEMPTS):
        spec_kv = await store.get(spec_key)
        info_kv = await store.get(info_key)
        if spec_kv is None and info_kv is None:
            raise NotFound(KIND, ref)
        if info_kv is not None and not force:
            raise Conflict(
                f"node {ref!r} is up (ready): stop its agent first (it is then down after "
                "its heartbeat TTL), or remove it anyway with force=true"
            )
        compares = [
            Compare(spec_key, spec_kv.mod_revision if spec_kv else 0),
            Compare(info_key, info_kv.mod_revision if info_kv else 0),
        ]
        ops = [Delete(key) for key, kv in ((spec_key, spec_kv), (info_key, info_kv)) if kv]
        result = await store.txn(compares, ops)
        if result.succeeded:
            return result.revision
    raise Conflict(f"node {ref!r} is being changed by others; try again")
