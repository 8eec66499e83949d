"""`--remove-tasks-on-stop`: an agent whose node goes away with it (a compose project's
agent container) removes its units on a clean stop; without the option, stopping the
agent leaves every unit running for the next agent to adopt.

docker-compose.test.yml's agents use it, and tests/cluster checks that `down -v` leaves
no task container on a real engine.
"""

from __future__ import annotations

import pytest

from controlplane.agent.agent import Agent
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


def _agent(agents: AgentRunner, runtime: FakeRuntime, *, remove: bool) -> Agent:
    return Agent(
        runtime=runtime,
        state_dir=agents.tmp_path / "agent",
        advertise_addr="127.0.0.2",
        store=agents.store,
        heartbeat_period=0.2,
        resync_interval=0.5,
        remove_units_on_stop=remove,
    )


@pytest.mark.parametrize("remove", [False, True], ids=["default", "remove-tasks-on-stop"])
async def test_a_clean_stop_removes_units_only_when_asked(
    agent_store: FlakyStore, agents: AgentRunner, remove: bool
) -> None:
    runtime = FakeRuntime()
    agent = await agents.start(_agent(agents, runtime, remove=remove))
    tasks = [make_task(agent.node_id) for _ in range(3)]
    for task in tasks:
        await put_task(agent_store, task)
    for task in tasks:
        await eventually(
            lambda task=task: state_is(agent_store, task.id, TaskState.RUNNING),
            what=f"task {task.id} running",
        )
    await agents.stop(agent)
    if remove:
        assert runtime.units == {}
        assert sorted(runtime.removes) == sorted(t.id for t in tasks)
    else:
        assert sorted(runtime.units) == sorted(t.id for t in tasks)
        assert runtime.removes == []
