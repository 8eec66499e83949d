"""The executor and an unhealthy unit: reported failed with the runtime's words, then stopped.

A container whose healthcheck failed is still running; swarm mode fails its task and
stops it, and the restart policy starts a new task. If the agent reported the failure
but left the container running, a node would fill up with unhealthy containers.
"""

from __future__ import annotations

import dataclasses

from controlplane.agent.runtime.docker import UNHEALTHY
from controlplane.models.task import TaskState
from tests.agent.conftest import (
    AgentRunner,
    FakeRuntime,
    FlakyStore,
    eventually,
    make_task,
    put_task,
    state_is,
)


async def test_an_unhealthy_unit_is_reported_failed_then_stopped(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    agent = await agents.start(agents.agent(fake_runtime))
    task = make_task(agent.node_id)
    await put_task(agent_store, task)
    await eventually(lambda: state_is(agent_store, task.id, TaskState.RUNNING), what="running")
    assert fake_runtime.stops == []

    unit = fake_runtime.units[task.id]
    fake_runtime.units[task.id] = dataclasses.replace(
        unit, state=TaskState.FAILED, message=UNHEALTHY, needs_stop=True
    )
    fake_runtime._publish(task.id)

    status = await eventually(
        lambda: state_is(agent_store, task.id, TaskState.FAILED), what="failed"
    )
    assert status.message == "unhealthy container"
    assert status.container_id == unit.container_id
    assert status.running_at is not None  # it ran (healthy) before: the update's monitor
    await eventually(lambda: _stopped(fake_runtime, task.id), what="the unit stopped")
    final = await state_is(agent_store, task.id, TaskState.FAILED)
    assert final is not None  # still the failure, not overwritten by a shutdown
    assert final.message == "unhealthy container"
    assert fake_runtime.starts == [task.id]  # never restarted in place


async def _stopped(runtime: FakeRuntime, task_id: str) -> bool:
    return task_id in runtime.stops
