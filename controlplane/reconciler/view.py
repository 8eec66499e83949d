"""What a pass knows about each task: its document, its status, and its node's state.

Built once per pass from the snapshot, in one walk over the tasks. A task's *state* is
its agent's last report, or `pending` / `assigned` before any. The words the case
modules use:

- **live**: desired state running (the leader still wants it).
- **exited**: it ended on its own: `complete`, `failed` or `rejected`. A task stopped on
  request reports `shutdown`; one the leader gave up on for its node is `orphaned`.
- **lost**: placed on a node whose heartbeat key has been gone for the grace period,
  and not known to have ended (`node_down`).
- **drained**: placed on a node whose availability is `drain`, and not ended (`drain`).
- **finished**: nothing more will happen to it: ended, or no longer wanted and either
  pending or on a node that is down. Only finished tasks are deleted.
- **current**: its task spec equals the one its service's spec gives now (`taskspec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from controlplane.models import Availability, Task, TaskSpec, TaskState
from controlplane.models.service import ServiceRecord, ServiceSpec
from controlplane.models.task import DesiredState
from controlplane.reconciler.config import ReconcilerConfig
from controlplane.reconciler.taskspec import task_spec_for
from controlplane.state import ClusterSnapshot, StoredService, StoredStatus, StoredTask

EXITED = frozenset({TaskState.COMPLETE, TaskState.FAILED, TaskState.REJECTED})
FAILURES = frozenset({TaskState.FAILED, TaskState.REJECTED})


@dataclass(frozen=True, slots=True)
class TaskInfo:
    stored: StoredTask
    status: StoredStatus | None
    state: TaskState
    node_up: bool
    down_since: float | None  # None while its node is up, and for a pending task
    lost: bool
    lost_at: float | None  # when it will count as lost, while its node is down
    drained: bool
    live: bool
    terminal: bool

    @property
    def task(self) -> Task:
        return self.stored.task

    @property
    def id(self) -> str:
        return self.stored.task.id

    @property
    def node_id(self) -> str:
        return self.stored.task.node_id

    @property
    def created(self) -> float:
        return self.stored.task.created

    @property
    def pending(self) -> bool:
        return self.stored.pending

    @property
    def exited(self) -> bool:
        return self.state in EXITED

    @property
    def failed(self) -> bool:
        return self.state in FAILURES

    @property
    def running(self) -> bool:
        return self.state is TaskState.RUNNING

    @property
    def finished(self) -> bool:
        return self.terminal or (not self.live and (self.pending or not self.node_up))

    @property
    def started_at(self) -> float | None:
        status = self.status.status if self.status is not None else None
        if status is None:
            return None
        if status.started_at is not None:
            return status.started_at
        return status.timestamp if self.state is TaskState.RUNNING else None

    @property
    def running_at(self) -> float | None:
        """When it was first reported running (healthy, with a healthcheck); None: never.

        A status without it (from the planner's tests, or an older agent) counts as
        running since it started, if it is running now."""
        status = self.status.status if self.status is not None else None
        if status is not None and status.running_at is not None:
            return status.running_at
        return self.started_at if self.running else None

    @property
    def finished_at(self) -> float:
        """When it ended, as its agent reported (its creation time if unreported)."""
        status = self.status.status if self.status is not None else None
        if status is not None and status.finished_at is not None:
            return status.finished_at
        if status is not None and status.timestamp:
            return status.timestamp
        return self.created


def newest_first(tasks: list[TaskInfo]) -> list[TaskInfo]:
    return sorted(tasks, key=lambda info: (info.created, info.id), reverse=True)


@dataclass(frozen=True)
class ServiceContext:
    """One service during one pass: its record and the task spec it gives."""

    stored: StoredService
    _current: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    @property
    def record(self) -> ServiceRecord:
        return self.stored.record

    @property
    def spec(self) -> ServiceSpec:
        return self.stored.record.spec

    @property
    def name(self) -> str:
        return self.stored.record.spec.name

    @cached_property
    def task_spec(self) -> TaskSpec:
        return task_spec_for(self.stored.record.spec)

    def is_current(self, info: TaskInfo) -> bool:
        """Its task spec is the one the service's spec gives. A task made from this very
        spec version is (the content check is for the others), and answers are kept
        for the pass: the planner asks about each task several times."""
        task = info.task
        if task.spec_version == self.stored.record.spec_version:
            return True
        found = self._current.get(task.id)
        if found is None:
            found = self._current[task.id] = task.spec == self.task_spec
        return found


class PassView:
    """The snapshot, classified for one pass at time `now`."""

    def __init__(self, snapshot: ClusterSnapshot, *, now: float, config: ReconcilerConfig) -> None:
        self.snapshot = snapshot
        self.now = now
        self.config = config
        self.infos: dict[str, TaskInfo] = {}
        self.by_service: dict[str, list[TaskInfo]] = {}
        for stored in snapshot.tasks.values():
            info = self._classify(stored)
            self.infos[info.id] = info
            self.by_service.setdefault(stored.task.service, []).append(info)

    def availability(self, node_id: str) -> Availability:
        spec = self.snapshot.node_specs.get(node_id)
        return spec.availability if spec is not None else Availability.ACTIVE

    def node_ids(self) -> list[str]:
        """Every node the cluster knows of: joined (a node spec) or heartbeating."""
        return sorted(set(self.snapshot.node_specs) | set(self.snapshot.nodes))

    def _classify(self, stored: StoredTask) -> TaskInfo:
        status = self.snapshot.statuses.get(stored.task.id)
        if status is not None:
            state = status.status.state
        else:
            state = TaskState.PENDING if stored.pending else TaskState.ASSIGNED
        node_id = stored.task.node_id
        down_since = None if stored.pending else self.snapshot.node_down_since(node_id)
        lost_at = None
        if down_since is not None and not state.terminal:
            lost_at = down_since + self.config.node_grace
        return TaskInfo(
            stored=stored,
            status=status,
            state=state,
            node_up=down_since is None,
            down_since=down_since,
            lost=lost_at is not None and self.now >= lost_at,
            lost_at=lost_at,
            drained=(
                not stored.pending
                and not state.terminal
                and self.availability(node_id) is Availability.DRAIN
            ),
            live=stored.task.desired_state is DesiredState.RUNNING,
            terminal=state.terminal,
        )
