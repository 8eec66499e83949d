"""The cluster at a glance: who leads, which managers are alive, how much runs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from controlplane.api.control.nodes import NodeStatus, list_nodes
from controlplane.api.control.tasks import observed
from controlplane.api.control.view import ClusterView
from controlplane.models import ClusterRecord, LeaderRecord, ManagerRecord


@dataclass(frozen=True, slots=True)
class SwarmSummary:
    cluster: ClusterRecord | None
    leader: LeaderRecord | None
    leader_term: int  # the leader key's revision: the fencing token of the current term
    managers: list[ManagerRecord]
    nodes_by_status: dict[str, int] = field(default_factory=dict)
    tasks_by_state: dict[str, int] = field(default_factory=dict)
    services: int = 0


def summarise(view: ClusterView) -> SwarmSummary:
    nodes = Counter(state.status.value for state in list_nodes(view))
    tasks = Counter(observed(view, task).state.value for task in view.tasks.values())
    return SwarmSummary(
        cluster=view.cluster,
        leader=view.leader,
        leader_term=view.leader_revision if view.leader is not None else 0,
        managers=sorted(view.managers.values(), key=lambda m: m.id),
        nodes_by_status={status.value: nodes.get(status.value, 0) for status in NodeStatus},
        tasks_by_state=dict(sorted(tasks.items())),
        services=len(view.services),
    )
