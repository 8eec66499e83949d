"""The runtime seam: describe the node, ensure/stop/remove a task, observe what runs.

A runtime is owned by one agent (one node). It identifies its work by labels on what it
starts, never by names alone, so that an agent restarted with the same node id adopts
what is already running, and never touches anything it did not start.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from controlplane.models.task import Endpoint, Task, TaskState

LABEL_CLUSTER = "com.shoal.cluster"
LABEL_NODE = "com.shoal.node"
LABEL_SERVICE = "com.shoal.service"
LABEL_TASK = "com.shoal.task"
LABEL_SLOT = "com.shoal.slot"


class TaskRejected(Exception):
    """The runtime cannot run this task at all (image missing, bad spec): final."""


class NotSupported(Exception):
    """This runtime cannot do that (logs of a hollow task, images of a process node)."""


class UnknownTask(LookupError):
    """This node has no unit for that task (never ran here, or already removed)."""


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line a task wrote, without its newline; `time` is RFC 3339 when known."""

    stream: Literal["stdout", "stderr"]
    line: str
    time: str | None = None


@dataclass(frozen=True, slots=True)
class NodeDescription:
    hostname: str
    os: str
    arch: str
    nano_cpus: int
    memory_bytes: int
    engine_version: str
    engine_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Observed:
    """One task's unit of work (container, process) as the runtime sees it now."""

    task_id: str
    state: TaskState  # RUNNING, COMPLETE, FAILED, or STARTING while it comes up
    container_id: str
    cluster_id: str = ""
    service: str = ""
    exit_code: int | None = None
    message: str = ""
    endpoints: tuple[Endpoint, ...] = ()
    started_at: float | None = None
    finished_at: float | None = None
    needs_stop: bool = False  # failed while its unit still runs (unhealthy): stop it


class Runtime(abc.ABC):
    """What an agent drives. Implementations are async; blocking clients run in threads."""

    name: str = ""

    @abc.abstractmethod
    async def describe(self) -> NodeDescription:
        """The node's platform and capacity, for its heartbeat document."""

    @abc.abstractmethod
    async def ensure(self, task: Task) -> Observed:
        """Make `task` run (create and start it unless it already exists); idempotent.

        Raises `TaskRejected` with the reason when it can never run here.
        """

    @abc.abstractmethod
    async def stop(self, task_id: str, *, grace: float) -> Observed | None:
        """Stop the task's unit (signal, then kill after `grace` s); None if unknown."""

    @abc.abstractmethod
    async def remove(self, task_id: str) -> None:
        """Remove the task's unit entirely (stopping it first); no error if unknown."""

    @abc.abstractmethod
    async def observe(self) -> list[Observed]:
        """Every unit of this cluster on this node, running or exited."""

    @abc.abstractmethod
    def changes(self) -> AsyncIterator[str]:
        """Task ids whose unit changed state (started, exited), as soon as it happens."""

    async def close(self) -> None:
        return None

    # -- optional: what the agent's endpoint serves (logs, inspect, kill, images) -------

    def logs(
        self, task_id: str, *, tail: int | None, timestamps: bool, follow: bool
    ) -> AsyncIterator[LogLine]:
        """The task's output, oldest first: the last `tail` lines (None: all), then,
        with `follow`, new lines as they come. `UnknownTask`, or `NotSupported`."""
        raise NotSupported(f"the {self.name} runtime keeps no task logs")

    async def inspect(self, task_id: str) -> dict[str, Any]:
        """The engine's own description of the task's unit; `UnknownTask`, `NotSupported`."""
        raise NotSupported(f"the {self.name} runtime cannot inspect a task")

    async def kill(self, task_id: str, *, signal: str) -> None:
        """Send `signal` (a name such as SIGKILL) to the task's unit; `UnknownTask`."""
        raise NotSupported(f"the {self.name} runtime cannot signal a task")

    async def images(self) -> list[dict[str, Any]]:
        """The node's images, as the Docker Engine lists them (`/images/json`)."""
        raise NotSupported(f"the {self.name} runtime has no images")
