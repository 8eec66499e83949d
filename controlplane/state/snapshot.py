"""A frozen picture of the cluster at one store revision, for one reconcile pass.

The mirror changes under every watch event; a planner must not see it move halfway
through a decision. A snapshot is the mirror's maps copied at one revision (a few dict
copies: cheap next to a pass over ten thousand tasks) behind read-only proxies. The
documents inside are shared with the mirror and must be treated as read-only; the mirror
never mutates a document, it replaces it.

Down nodes: a node is up while its `nodes/<id>` key exists. `down_since` holds the time
the mirror saw each key disappear; a node it never saw up (a node spec without a
heartbeat, or a task on a node the mirror never heard of) counts as down since the
mirror started watching, which is the earliest moment this manager could have known.

`narrowed(services)` is the same picture with only those services' tasks in `tasks`
(everything else, statuses and nodes included, unchanged): what a pass that re-plans
only some services classifies.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from controlplane.models import ClusterRecord, LeaderRecord, ManagerRecord, NodeInfo, NodeSpec
from controlplane.state.records import StoredService, StoredStatus, StoredTask


def _empty() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """The cluster as of `revision`. `tasks` holds placed and pending tasks alike."""

    revision: int = 0
    watching_since: float = 0.0
    cluster: ClusterRecord | None = None
    leader: LeaderRecord | None = None
    leader_revision: int = 0
    managers: Mapping[str, ManagerRecord] = field(default_factory=_empty)
    nodes: Mapping[str, NodeInfo] = field(default_factory=_empty)
    node_specs: Mapping[str, NodeSpec] = field(default_factory=_empty)
    services: Mapping[str, StoredService] = field(default_factory=_empty)
    tasks: Mapping[str, StoredTask] = field(default_factory=_empty)
    statuses: Mapping[str, StoredStatus] = field(default_factory=_empty)
    down_since: Mapping[str, float] = field(default_factory=_empty)
    #: service name -> the ids of its tasks (placed and pending)
    task_ids_by_service: Mapping[str, tuple[str, ...]] = field(default_factory=_empty)

    def node_down_since(self, node_id: str) -> float | None:
        """None while the node is up; else when it went down (see the module docstring)."""
        if node_id in self.nodes:
            return None
        return self.down_since.get(node_id, self.watching_since)

    def task_ids_of(self, service: str) -> tuple[str, ...]:
        return self.task_ids_by_service.get(service, ())

    def narrowed(self, services: Collection[str]) -> ClusterSnapshot:
        """This snapshot with only the tasks of `services` (see the module docstring)."""
        tasks = {
            task_id: self.tasks[task_id]
            for name in services
            for task_id in self.task_ids_of(name)
            if task_id in self.tasks
        }
        return replace(
            self,
            tasks=MappingProxyType(tasks),
            task_ids_by_service=MappingProxyType(
                {name: self.task_ids_of(name) for name in services}
            ),
        )
