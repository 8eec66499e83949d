"""Tasks: what the leader assigned joined with what the agents report.

A task's state is its agent's last report (`status/<id>`); before any report it is
`pending` (no node fits yet) or `assigned` (placed, not picked up). Read-only here:
tasks are written by the leader alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.api.control.errors import NotFound
from controlplane.api.control.view import ClusterView
from controlplane.models import Task, TaskState, TaskStatus
from controlplane.models.task import DesiredState


@dataclass(frozen=True, slots=True)
class TaskFilter:
    service: str | None = None  # name or id
    node: str | None = None  # node id
    desired_state: DesiredState | None = None
    state: TaskState | None = None


@dataclass(frozen=True, slots=True)
class ObservedTask:
    task: Task
    status: TaskStatus | None

    @property
    def state(self) -> TaskState:
        if self.status is not None:
            return self.status.state
        return TaskState.ASSIGNED if self.task.node_id else TaskState.PENDING


def observed(view: ClusterView, task: Task) -> ObservedTask:
    return ObservedTask(task=task, status=view.statuses.get(task.id))


def list_tasks(view: ClusterView, query: TaskFilter) -> list[ObservedTask]:
    found = []
    for task in view.tasks.values():
        if query.service is not None and query.service not in (task.service, task.service_id):
            continue
        if query.node is not None and task.node_id != query.node:
            continue
        if query.desired_state is not None and task.desired_state is not query.desired_state:
            continue
        item = observed(view, task)
        if query.state is not None and item.state is not query.state:
            continue
        found.append(item)
    return sorted(
        found, key=lambda t: (t.task.service, t.task.slot or 0, t.task.created, t.task.id)
    )


def find_task(view: ClusterView, ref: str) -> ObservedTask:
    task = view.tasks.get(ref)
    if task is None:
        prefixed = [t for t in view.tasks.values() if t.id.startswith(ref)]
        if len(prefixed) != 1:
            raise NotFound("task", ref)
        task = prefixed[0]
    return observed(view, task)
