"""The plan being built during one pass: ops in decision order, and what waits on placement.

The case modules call these verbs; none of them writes anything. A task gets at most one
op per pass (the first decision about it wins), so two rules that both want to touch a
task (a slot's history trim and a node's return, say) cannot write it twice. New tasks
and pending tasks are recorded as intents at the position they were decided, and
`placement` fills them in after the whole pass, with one scheduler call.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.models import TaskState, TaskStatus
from controlplane.models.service import ServiceRecord
from controlplane.models.task import DesiredState
from controlplane.reconciler.ids import new_task_id
from controlplane.reconciler.plan import (
    DeleteStatus,
    DeleteTask,
    PlanOp,
    ShutdownTask,
    UpdateServiceRecord,
)
from controlplane.reconciler.view import PassView, ServiceContext, TaskInfo
from controlplane.state import StoredService, StoredStatus


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task to create once the scheduler says where (or why nowhere)."""

    ctx: ServiceContext
    task_id: str
    slot: int | None
    node_id: str | None  # pinned to this node (a global service's task)
    reason: str


@dataclass(frozen=True, slots=True)
class PendingPlacement:
    """A pending task to place, if a node fits it now."""

    ctx: ServiceContext
    info: TaskInfo


Entry = PlanOp | NewTask | PendingPlacement


class PlanBuilder:
    """The verbs the case modules decide with; `placement.Placement.resolve` finishes it."""

    def __init__(self, view: PassView) -> None:
        self.view = view
        self.entries: list[Entry] = []
        self._claimed: set[str] = set()
        self._wakeups: list[float] = []

    @property
    def next_wakeup(self) -> float | None:
        return min(self._wakeups, default=None)

    def claimed(self, task_id: str) -> bool:
        return task_id in self._claimed

    def _claim(self, info: TaskInfo) -> bool:
        if info.id in self._claimed:
            return False
        self._claimed.add(info.id)
        return True

    def wake_at(self, when: float) -> None:
        """Ask for a pass at `when` (ignored unless it is in the future)."""
        if when > self.view.now:
            self._wakeups.append(when)

    # --- existing tasks ---------------------------------------------------------------
    def shutdown(self, info: TaskInfo, *, reason: str) -> None:
        """Stop a task; a pending one has nothing to stop and is deleted instead."""
        if info.pending:
            self.delete(info, reason=reason)
            return
        if not self._claim(info):
            return
        task = info.task.model_copy(update={"desired_state": DesiredState.SHUTDOWN})
        self.entries.append(
            ShutdownTask(
                task=task, key=info.stored.key, mod_revision=info.stored.mod_revision, reason=reason
            )
        )

    def orphan(self, info: TaskInfo) -> None:
        """Give up on a task of a down node: desired shutdown, status `orphaned`."""
        if not self._claim(info):
            return
        now = self.view.now
        task = info.task.model_copy(update={"desired_state": DesiredState.SHUTDOWN})
        message = f"node {info.node_id} is down; the task was replaced"
        if info.status is not None:
            status = info.status.status.model_copy(
                update={"state": TaskState.ORPHANED, "message": message, "timestamp": now}
            )
            status_revision = info.status.mod_revision
        else:
            status = TaskStatus(
                task_id=info.id, state=TaskState.ORPHANED, message=message, timestamp=now
            )
            status_revision = 0
        self.entries.append(
            ShutdownTask(
                task=task,
                key=info.stored.key,
                mod_revision=info.stored.mod_revision,
                reason="node down",
                status=status,
                status_revision=status_revision,
            )
        )

    def delete(self, info: TaskInfo, *, reason: str) -> None:
        if not self._claim(info):
            return
        self.entries.append(
            DeleteTask(
                task_id=info.id,
                key=info.stored.key,
                mod_revision=info.stored.mod_revision,
                reason=reason,
            )
        )

    def delete_status(self, task_id: str, stored: StoredStatus) -> None:
        self.entries.append(DeleteStatus(task_id=task_id, mod_revision=stored.mod_revision))

    def place_pending(self, ctx: ServiceContext, info: TaskInfo) -> None:
        if info.id not in self._claimed:
            self.entries.append(PendingPlacement(ctx=ctx, info=info))

    # --- new tasks and services -------------------------------------------------------
    def new_task(
        self, ctx: ServiceContext, *, slot: int | None, node_id: str | None = None, reason: str
    ) -> str:
        """Ask for a new task in `slot` (or on `node_id`, for a global service)."""
        slot_key: int | str = slot if slot is not None else f"node:{node_id}"
        task_id = new_task_id(
            service_id=ctx.record.id, slot=slot_key, revision=self.view.snapshot.revision
        )
        self.entries.append(
            NewTask(ctx=ctx, task_id=task_id, slot=slot, node_id=node_id, reason=reason)
        )
        return task_id

    def update_record(self, stored: StoredService, record: ServiceRecord, *, reason: str) -> None:
        self.entries.append(
            UpdateServiceRecord(record=record, mod_revision=stored.mod_revision, reason=reason)
        )
