"""A plan: what one reconcile pass decided, as a list of store operations to make.

The planner returns a `Plan` and writes nothing; the applier turns each op into guarded
store operations (its own compares, plus the leader's fence) and writes them. Each op
names the revision its decision was based on, so a write based on a stale view fails
instead of clobbering a newer value, and the next pass decides again.

The ops (each one is written whole, or not at all):

- `CreateTask`: `tasks/<node>/<id>` with status `assigned`; or, when no node fits,
  `pending/<id>` with status `pending` carrying the scheduler's explanation. Guard: both
  keys absent.
- `PlacePending`: deletes `pending/<id>`, writes `tasks/<node>/<id>` (the same id) with
  status `assigned`. Guard: the pending key unchanged, the task key absent.
- `ShutdownTask`: the task again, desired state `shutdown`; for a task on a down node,
  also its status `orphaned`. Guard: the task key (and that status) unchanged.
- `DeleteTask`: the task key and its status. Guard: the task key unchanged.
- `DeleteStatus`: a status whose task is gone. Guard: the status unchanged.
- `UpdateServiceRecord`: the service record (its update state, or a rollback's spec
  swap). Guard: the service key unchanged, so a user's concurrent change wins.

`next_wakeup` is the earliest time at which something not yet due becomes due (a
restart delay, an update delay or monitor period, a down node's grace period): the loop
runs a pass then even if the store stays quiet.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from controlplane import keys
from controlplane.models import Task, TaskStatus
from controlplane.models.service import ServiceRecord


@dataclass(frozen=True, slots=True)
class CreateTask:
    task: Task  # node_id "" for a task no node fits: it goes under `pending/`
    status: TaskStatus
    reason: str = ""

    @property
    def key(self) -> str:
        if self.task.node_id:
            return keys.task(self.task.node_id, self.task.id)
        return keys.pending(self.task.id)


@dataclass(frozen=True, slots=True)
class PlacePending:
    task: Task  # the pending task with its node id filled in
    pending_revision: int
    status: TaskStatus
    reason: str = "placed"

    @property
    def pending_key(self) -> str:
        return keys.pending(self.task.id)

    @property
    def key(self) -> str:
        return keys.task(self.task.node_id, self.task.id)


@dataclass(frozen=True, slots=True)
class ShutdownTask:
    task: Task  # with desired_state shutdown
    key: str
    mod_revision: int
    reason: str = ""
    #: Written with the task when its node is down: state `orphaned`.
    status: TaskStatus | None = None
    status_revision: int = 0  # 0: the status key is absent


@dataclass(frozen=True, slots=True)
class DeleteTask:
    task_id: str
    key: str
    mod_revision: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DeleteStatus:
    task_id: str
    mod_revision: int
    reason: str = "its task is gone"


@dataclass(frozen=True, slots=True)
class UpdateServiceRecord:
    record: ServiceRecord
    mod_revision: int
    reason: str = ""

    @property
    def key(self) -> str:
        return keys.service(self.record.spec.name)


PlanOp = CreateTask | PlacePending | ShutdownTask | DeleteTask | DeleteStatus | UpdateServiceRecord


@dataclass(frozen=True, slots=True)
class Plan:
    """The ops of one pass, in the order to apply them, and when to look again."""

    ops: tuple[PlanOp, ...] = ()
    next_wakeup: float | None = None
    revision: int = 0  # the snapshot revision this plan was computed from

    def __len__(self) -> int:
        return len(self.ops)

    def summary(self) -> str:
        """ "3 CreateTask (2 restart, 1 scale up), 1 ShutdownTask (drain)": for logs."""
        if not self.ops:
            return "nothing to do"
        kinds = Counter(type(op).__name__ for op in self.ops)
        reasons: dict[str, Counter[str]] = {}
        for op in self.ops:
            reasons.setdefault(type(op).__name__, Counter())[op.reason] += 1
        parts = []
        for kind, count in kinds.items():
            why = ", ".join(f"{n} {reason}" for reason, n in reasons[kind].items() if reason)
            parts.append(f"{count} {kind}" + (f" ({why})" if why else ""))
        return ", ".join(parts)
