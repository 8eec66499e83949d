"""The hollow runtime: a node that accepts tasks and runs nothing, for scale tests.

Like Kubernetes' kubemark hollow nodes, it lets one machine stand in for a large cluster:
the agent, its heartbeat, its watch and its status reports are real, only the work is
missing. A task is "running" the moment it is ensured, and stays so until it is stopped
(then complete, exit 0) or removed (then forgotten). A task's healthcheck is taken as
passed at once: a hollow task is healthy the moment it runs.

Cost is the point: one process hosts a thousand of these, so an instance is a dict and
a change feed, with no thread, no asyncio task and no I/O of its own. Scale tests that
need failures call `exit_task` to make a task end with a chosen exit code.
"""

from __future__ import annotations

import platform
import time
from collections.abc import AsyncIterator

from controlplane.agent.runtime.base import NodeDescription, Observed, Runtime, TaskRejected
from controlplane.agent.runtime.endpoints import declared_endpoints
from controlplane.agent.runtime.feed import ChangeFeed
from controlplane.models.task import Task, TaskState

HOLLOW_VERSION = "hollow"


class HollowRuntime(Runtime):
    """Pretends to run tasks; `changes()` announces what `stop`/`exit_task`/`remove` did.

    A start is not announced: `ensure` returns the unit already running, which is all an
    agent would learn from the announcement, and at ten thousand tasks the extra look at
    every started task is a good part of a fleet's work.
    """

    name = "hollow"

    def __init__(
        self,
        *,
        node_id: str,
        nano_cpus: int,
        memory_bytes: int,
        hostname: str | None = None,
        cluster_id: str = "",
        advertise_addr: str = "127.0.0.1",
    ) -> None:
        self._node_id = node_id
        self._nano_cpus = nano_cpus
        self._memory_bytes = memory_bytes
        self._hostname = hostname or f"hollow-{node_id}"
        self._cluster_id = cluster_id
        self._advertise_addr = advertise_addr
        self._units: dict[str, Observed] = {}
        self._feed = ChangeFeed()

    async def describe(self) -> NodeDescription:
        return NodeDescription(
            hostname=self._hostname,
            os="linux",
            arch=platform.machine() or "x86_64",
            nano_cpus=self._nano_cpus,
            memory_bytes=self._memory_bytes,
            engine_version=HOLLOW_VERSION,
            engine_labels={"com.shoal.hollow": "true"},
        )

    async def ensure(self, task: Task) -> Observed:
        existing = self._units.get(task.id)
        if existing is not None:
            return existing
        if not task.spec.image and not task.spec.command:
            raise TaskRejected("the task has neither an image nor a command")
        unit = Observed(
            task_id=task.id,
            state=TaskState.RUNNING,
            container_id=f"hollow-{task.id}",
            cluster_id=self._cluster_id,
            service=task.service,
            endpoints=declared_endpoints(task.spec.ports, host_ip=self._advertise_addr),
            started_at=time.time(),
        )
        self._units[task.id] = unit
        return unit  # not announced: it is running already, and `ensure` says so

    async def stop(self, task_id: str, *, grace: float) -> Observed | None:
        unit = self._units.get(task_id)
        if unit is None or unit.state is not TaskState.RUNNING:
            return unit
        return self.exit_task(task_id, exit_code=0)

    async def remove(self, task_id: str) -> None:
        if self._units.pop(task_id, None) is not None:
            self._feed.publish(task_id)

    async def observe(self) -> list[Observed]:
        return list(self._units.values())

    def changes(self) -> AsyncIterator[str]:
        return self._feed.subscribe()

    async def close(self) -> None:
        self._feed.close()

    def exit_task(self, task_id: str, *, exit_code: int) -> Observed | None:
        """Make a running task end now, as if its process exited with `exit_code`."""
        unit = self._units.get(task_id)
        if unit is None or unit.state is not TaskState.RUNNING:
            return unit
        failed = exit_code != 0
        ended = Observed(
            task_id=unit.task_id,
            state=TaskState.FAILED if failed else TaskState.COMPLETE,
            container_id=unit.container_id,
            cluster_id=unit.cluster_id,
            service=unit.service,
            exit_code=exit_code,
            message=f"task: non-zero exit ({exit_code})" if failed else "",
            started_at=unit.started_at,
            finished_at=time.time(),
        )
        self._units[task_id] = ended
        self._feed.publish(task_id)
        return ended
