"""Tasks: what the leader assigned joined with what the agents report.

A task's state is its agent's last report (`status/<id>`); before any report it is
`pending` (no node fits yet) or `assigned` (placed, not picked up). Read-only here:
tasks are written by the leader alone.

Lists are sorted by (service, slot, created, id), and may be read a page at a time:
`page(found, limit=..., after=...)` takes the tasks after a cursor, the opaque form of
the last sort key a client saw. A cursor stays valid while tasks come and go: the next
page starts after that key, wherever it now is.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from controlplane.api.control.errors import Invalid, NotFound
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


SortKey = tuple[str, int, float, str]


def sort_key(task: Task) -> SortKey:
    return (task.service, task.slot or 0, task.created, task.id)


def list_tasks(view: ClusterView, query: TaskFilter) -> list[ObservedTask]:
    found = []
    statuses = view.statuses  # one mapping for the whole walk
    candidates = view.tasks.values() if query.service is None else view.tasks_of(query.service)
    if query.service is not None and not candidates:  # perhaps a service id
        candidates = view.tasks.values()
    for task in candidates:
        if query.service is not None and query.service not in (task.service, task.service_id):
            continue
        if query.node is not None and task.node_id != query.node:
            continue
        if query.desired_state is not None and task.desired_state is not query.desired_state:
            continue
        item = ObservedTask(task=task, status=statuses.get(task.id))
        if query.state is not None and item.state is not query.state:
            continue
        found.append(item)
    return sorted(found, key=lambda t: sort_key(t.task))


def cursor_of(task: Task) -> str:
    """The opaque cursor that pages after `task`."""
    return base64.urlsafe_b64encode(json.dumps(sort_key(task)).encode()).decode()


def after_key(cursor: str) -> SortKey:
    """The sort key a cursor stands for; `Invalid` when it is not one this API gave."""
    try:
        service, slot, created, task_id = json.loads(base64.urlsafe_b64decode(cursor))
        return (str(service), int(slot), float(created), str(task_id))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise Invalid(
            ("query", "after"), "not a cursor this API gave (use the Shoal-Next-Cursor header)"
        ) from exc


def page(
    found: list[ObservedTask], *, limit: int | None, after: str | None
) -> tuple[list[ObservedTask], str | None]:
    """The tasks after the cursor `after`, at most `limit` of them, and the cursor of the
    next page (None: this is the last)."""
    if after is not None:
        start = after_key(after)
        found = [item for item in found if sort_key(item.task) > start]
    if limit is None or len(found) <= limit:
        return found, None
    return found[:limit], cursor_of(found[limit - 1].task)


def find_task(view: ClusterView, ref: str) -> ObservedTask:
    task = view.tasks.get(ref)
    if task is None:
        prefixed = [t for t in view.tasks.values() if t.id.startswith(ref)]
        if len(prefixed) != 1:
            raise NotFound("task", ref)
        task = prefixed[0]
    return observed(view, task)
