"""Bodies of `/tasks`: a task as assigned, with its last reported status.

A list of ten thousand tasks is served by `TaskListEncoder`, which keeps each task's
JSON until its task or status document changes (the mirror replaces a document on
every change and never mutates one, so identity says "unchanged"): a list costs a join
of cached bytes, not ten thousand models built, validated and dumped per request. A
whole kept list (`control.task_lists.TaskList`, one service's tasks or all of them) is
encoded once: its bytes are kept with it and served again while it is the list the
mirror's version says is current.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from controlplane.api.control.task_lists import MAX_LISTS, TaskList
from controlplane.api.control.tasks import ObservedTask
from controlplane.models import Endpoint, Task, TaskState, TaskStatus
from controlplane.models.task import DesiredState


class TaskView(BaseModel):
    id: str
    service: str
    service_id: str
    slot: int | None
    node_id: str
    image: str
    spec_version: int
    desired_state: DesiredState
    state: TaskState
    message: str
    error: str
    container_id: str
    exit_code: int | None
    endpoints: list[Endpoint]
    created: float
    updated: float | None

    @classmethod
    def of(cls, item: ObservedTask) -> TaskView:
        task, status = item.task, item.status
        return cls(
            id=task.id,
            service=task.service,
            service_id=task.service_id,
            slot=task.slot,
            node_id=task.node_id,
            image=task.spec.image,
            spec_version=task.spec_version,
            desired_state=task.desired_state,
            state=item.state,
            message=status.message if status else "",
            error=status.error if status else "",
            container_id=status.container_id if status else "",
            exit_code=status.exit_code if status else None,
            endpoints=list(status.endpoints) if status else [],
            created=task.created,
            updated=status.timestamp if status else None,
        )


class TaskListEncoder:
    """The JSON of task lists, each task's part cached while its documents are the same."""

    def __init__(self, *, max_cached: int = 200_000) -> None:
        self._max_cached = max_cached
        self._cache: dict[str, tuple[Task, TaskStatus | None, bytes]] = {}
        self._whole: dict[str | None, tuple[TaskList, bytes]] = {}

    def encode_list(self, kept: TaskList) -> bytes:
        """The whole of a kept list, encoded once for as long as it is kept."""
        hit = self._whole.get(kept.scope)
        if hit is not None and hit[0] is kept:
            return hit[1]
        body = self.encode(kept.items)
        self._whole.pop(kept.scope, None)
        self._whole[kept.scope] = (kept, body)
        while len(self._whole) > MAX_LISTS + 1:
            del self._whole[next(iter(self._whole))]
        return body

    def encode(self, items: Sequence[ObservedTask]) -> bytes:
        """`[TaskView, ...]` as JSON, the same bytes FastAPI would give for the models."""
        cache = self._cache
        if len(cache) > self._max_cached:
            cache.clear()
        parts = []
        for item in items:
            hit = cache.get(item.task.id)
            if hit is not None and hit[0] is item.task and hit[1] is item.status:
                parts.append(hit[2])
                continue
            raw = TaskView.of(item).model_dump_json().encode()
            cache[item.task.id] = (item.task, item.status, raw)
            parts.append(raw)
        return b"[" + b",".join(parts) + b"]"
