"""Tasks: one placement of one slot of a service on one node, and its reported status.

A task (`tasks/<node>/<task-id>`) is written only by the leader and never moved: a
rescheduled slot gets a new task. The agent reports what really happens under
`status/<task-id>`; the two are joined by task id.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from controlplane.models.base import Document
from controlplane.models.service import HealthCheck, PortConfig


class TaskState(StrEnum):
    """Observed states, in the order a healthy task passes through them."""

    NEW = "new"
    PENDING = "pending"  # written by the leader, not yet placed (no node fits)
    ASSIGNED = "assigned"  # placed on a node; the agent has not picked it up yet
    PREPARING = "preparing"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    SHUTDOWN = "shutdown"
    REJECTED = "rejected"
    ORPHANED = "orphaned"  # its node went down and it was replaced

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        TaskState.COMPLETE,
        TaskState.FAILED,
        TaskState.SHUTDOWN,
        TaskState.REJECTED,
        TaskState.ORPHANED,
    }
)


class DesiredState(StrEnum):
    RUNNING = "running"
    SHUTDOWN = "shutdown"


class TaskSpec(Document):
    """What a runtime needs to run one task: a copy of the service spec's container part."""

    image: str
    command: list[str] | None = None  # replaces the image's entrypoint when set
    args: list[str] | None = None  # replaces the image's CMD when set
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    ports: list[PortConfig] = Field(default_factory=list)
    nano_cpus_limit: int = 0
    memory_limit_bytes: int = 0
    stop_signal: str | None = None
    stop_grace_seconds: float = 10.0
    hostname: str | None = None
    init: bool = False  # run an init process as PID 1 (forwards signals, reaps zombies)
    healthcheck: HealthCheck | None = None  # None: the image's own, if it has one


class Task(Document):
    """`tasks/<node-id>/<task-id>`: immutable once written, except its desired state."""

    id: str
    service: str
    service_id: str = ""
    slot: int | None = None  # None for global services (one per node)
    node_id: str  # "" while pending (no node fits yet)
    #: A global service's task is for one node: while it waits under `pending/` (that
    #: node cannot take it yet), its node's id; "" for every other task, and then not
    #: written at all, so agents from before the field read what they always read.
    pinned_node: str = Field(default="", exclude_if=lambda value: not value)
    spec_version: int
    spec: TaskSpec
    desired_state: DesiredState = DesiredState.RUNNING
    created: float = 0.0


class Endpoint(Document):
    """A published port of a running task, as it can be reached."""

    protocol: str = "tcp"
    target_port: int
    published_port: int
    host_ip: str


class TaskStatus(Document):
    """`status/<task-id>`: what the agent has observed."""

    task_id: str
    state: TaskState
    container_id: str = ""
    endpoints: list[Endpoint] = Field(default_factory=list)
    exit_code: int | None = None
    message: str = ""
    error: str = ""
    timestamp: float = 0.0
    started_at: float | None = None
    # When it was first reported running (with a healthcheck: once healthy); None if never.
    running_at: float | None = None
    finished_at: float | None = None
