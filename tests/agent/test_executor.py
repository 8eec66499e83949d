"""The executor, in-process on the memory store with a fake runtime.

What users care about: a task written for a node runs there and its status says so, in
order; stopping and removing do what they say; an exit is reported with its code and
never restarted behind the reconciler's back; an agent restart adopts what runs; a
leftover unit of the cluster is cleaned up and nothing else is touched; a status written
while the store is down is delivered when it returns.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from controlplane import keys
from controlplane.agent.identity import Identity, save_identity
from controlplane.models import TaskStatus
from controlplane.models.task import DesiredState, TaskState
from discovery import EventType
from tests.agent.conftest import (
    CLUSTER_ID,
    REJECTED_IMAGE,
    AgentRunner,
    FakeRuntime,
    FlakyStore,
    eventually,
    make_task,
    put_task,
    set_desired,
    state_is,
    status_of,
)


async def test_task_runs_and_its_status_moves_through_the_states(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    agent = await agents.start(agents.agent(fake_runtime))
    task = make_task(agent.node_id)
    start = (await agent_store.list(keys.status(task.id))).revision + 1
    seen: list[TaskStatus] = []

    async def follow() -> None:
        async for event in agent_store.inner.watch(keys.status(task.id), start_revision=start):
            if event.type is EventType.PUT and event.value is not None:
                seen.append(TaskStatus.load(event.value))
                if seen[-1].state is TaskState.RUNNING:
                    return

    follower = asyncio.create_task(follow())
    await put_task(agent_store, task)
    await asyncio.wait_for(follower, 5.0)
    # `starting` is queued without waiting and the start follows at once: writes of one
    # task waiting together land as one (the latest); what the store shows moves
    # forward, never back, and ends at running
    states = [s.state for s in seen]
    assert states in ([TaskState.STARTING, TaskState.RUNNING], [TaskState.RUNNING]), states
    running = seen[-1]
    assert running.container_id == fake_runtime.units[task.id].container_id
    assert running.timestamp > 0
    assert running.started_at is not None
    assert fake_runtime.starts == [task.id]


async def test_desired_shutdown_stops_and_deleting_the_key_removes(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    agent = await agents.start(agents.agent(fake_runtime))
    task = make_task(agent.node_id)
    await put_task(agent_store, task)
    await eventually(lambda: state_is(agent_store, task.id, TaskState.RUNNING), what="running")

    await set_desired(agent_store, task, DesiredState.SHUTDOWN)
    status = await eventually(
        lambda: state_is(agent_store, task.id, TaskState.SHUTDOWN), what="shutdown"
    )
    assert fake_runtime.stops == [task.id]
    assert status.exit_code == 143
    assert task.id in fake_runtime.units  # stopped, not removed

    await agent_store.delete(keys.task(agent.node_id, task.id))

    async def removed() -> bool:
        return task.id not in fake_runtime.units and await status_of(agent_store, task.id) is None

    await eventually(removed, what="unit and status removed")
    assert fake_runtime.starts == [task.id]


async def test_exit_code_is_reported_and_the_task_is_not_restarted(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    agent = await agents.start(agents.agent(fake_runtime, resync=0.2))
    task = make_task(agent.node_id)
    await put_task(agent_store, task)
    await eventually(lambda: state_is(agent_store, task.id, TaskState.RUNNING), what="running")
    fake_runtime.exit_unit(task.id, 3)
    failed = await eventually(
        lambda: state_is(agent_store, task.id, TaskState.FAILED), what="failed"
    )
    assert failed.exit_code == 3
    assert failed.finished_at is not None
    await asyncio.sleep(0.5)  # two resyncs: a failed task must stay failed
    assert fake_runtime.starts == [task.id]
    final = await status_of(agent_store, task.id)
    assert final is not None
    assert final.state is TaskState.FAILED


async def test_a_task_the_runtime_cannot_run_is_rejected_with_the_reason(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    agent = await agents.start(agents.agent(fake_runtime))
    task = make_task(agent.node_id, image=REJECTED_IMAGE)
    await put_task(agent_store, task)
    status = await eventually(
        lambda: state_is(agent_store, task.id, TaskState.REJECTED), what="rejected"
    )
    assert "not on this node" in status.error


async def test_restarted_agent_adopts_running_units_and_statuses_resume(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    first = await agents.start(agents.agent(fake_runtime))
    tasks = [make_task(first.node_id) for _ in range(5)]
    for task in tasks:
        await put_task(agent_store, task)
    for task in tasks:
        await eventually(lambda t=task: state_is(agent_store, t.id, TaskState.RUNNING))
    containers = {t.id: fake_runtime.units[t.id].container_id for t in tasks}
    await agents.stop(first)
    assert all(fake_runtime.units[t.id].state is TaskState.RUNNING for t in tasks)

    second = await agents.start(agents.agent(fake_runtime))
    assert second.node_id == first.node_id
    assert sorted(fake_runtime.starts) == sorted(t.id for t in tasks)  # nothing restarted
    assert {t.id: fake_runtime.units[t.id].container_id for t in tasks} == containers

    fake_runtime.exit_unit(tasks[0].id, 0)
    done = await eventually(lambda: state_is(agent_store, tasks[0].id, TaskState.COMPLETE))
    assert done.container_id == containers[tasks[0].id]
    for task in tasks[1:]:
        status = await status_of(agent_store, task.id)
        assert status is not None
        assert (status.state, status.container_id) == (TaskState.RUNNING, containers[task.id])


async def test_units_exited_while_the_agent_was_away_are_reported(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    first = await agents.start(agents.agent(fake_runtime))
    task = make_task(first.node_id)
    await put_task(agent_store, task)
    await eventually(lambda: state_is(agent_store, task.id, TaskState.RUNNING))
    await agents.stop(first)
    fake_runtime.exit_unit(task.id, 7)
    await agents.start(agents.agent(fake_runtime))
    failed = await eventually(lambda: state_is(agent_store, task.id, TaskState.FAILED))
    assert failed.exit_code == 7
    assert fake_runtime.starts == [task.id]


async def test_stray_unit_of_the_cluster_is_removed_and_an_unlabelled_one_survives(
    agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    fake_runtime.add_unit("left-over", cluster_id=CLUSTER_ID)
    fake_runtime.add_unit("not-ours", cluster_id="")
    fake_runtime.add_unit("other-cluster", cluster_id="another-cluster")
    await agents.start(agents.agent(fake_runtime))

    async def cleaned() -> bool:
        return "left-over" not in fake_runtime.units

    await eventually(cleaned, what="stray unit removed")
    assert "not-ours" in fake_runtime.units
    assert "other-cluster" in fake_runtime.units
    assert "not-ours" not in fake_runtime.removes


async def test_a_unit_that_vanishes_is_reported_failed(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    agent = await agents.start(agents.agent(fake_runtime))
    task = make_task(agent.node_id)
    await put_task(agent_store, task)
    await eventually(lambda: state_is(agent_store, task.id, TaskState.RUNNING))
    fake_runtime.vanish(task.id)
    failed = await eventually(lambda: state_is(agent_store, task.id, TaskState.FAILED))
    assert "disappeared" in failed.message
    assert fake_runtime.starts == [task.id]


async def test_status_written_while_the_store_is_down_is_flushed_when_it_returns(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    agent = await agents.start(agents.agent(fake_runtime, period=0.2))
    task = make_task(agent.node_id)
    await put_task(agent_store, task)
    await eventually(lambda: state_is(agent_store, task.id, TaskState.RUNNING))
    agent_store.go_down()
    fake_runtime.exit_unit(task.id, 3)

    async def kept() -> bool:
        return agent.reporter is not None and agent.reporter.kept == 1

    await eventually(kept, what="the failed status kept while the store is down")
    agent_store.come_back()
    failed = await eventually(lambda: state_is(agent_store, task.id, TaskState.FAILED))
    assert failed.exit_code == 3
    assert fake_runtime.stops == []  # losing the store never stops anything


async def test_watch_compaction_lists_again_and_catches_up(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    agent = await agents.start(agents.agent(fake_runtime))
    gone = make_task(agent.node_id)
    await put_task(agent_store, gone)
    await eventually(lambda: state_is(agent_store, gone.id, TaskState.RUNNING))
    # the watch drops and its history is gone: the executor must list again and diff
    agent_store.compact_next_watch = True
    agent_store.break_watches()
    await agent_store.delete(keys.task(agent.node_id, gone.id))
    new = make_task(agent.node_id)
    await put_task(agent_store, new)

    async def caught_up() -> bool:
        return gone.id not in fake_runtime.units and new.id in fake_runtime.units

    await eventually(caught_up, what="deleted task removed and new task started")
    assert not agent_store.compact_next_watch  # the compacted path was taken


async def test_a_unit_that_never_finished_starting_is_started_not_recreated(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime, tmp_path: Path
) -> None:
    node_id = "half-started-node"
    save_identity(
        tmp_path / "agent", Identity(node_id=node_id, cluster_id=CLUSTER_ID, discovery="")
    )
    task = make_task(node_id)
    await put_task(agent_store, task)
    fake_runtime.add_unit(task.id, cluster_id=CLUSTER_ID, state=TaskState.STARTING)
    created = fake_runtime.units[task.id].container_id
    await agents.start(agents.agent(fake_runtime))
    running = await eventually(lambda: state_is(agent_store, task.id, TaskState.RUNNING))
    assert running.container_id == created
    assert fake_runtime.starts == []  # nothing new was created


async def test_a_unit_still_running_under_a_failed_task_is_stopped_and_the_failure_kept(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    """A task reported final has a successor; its unit running on would run its slot
    twice. Whether the task is still meant to run (history) or meant to shut down, the
    agent stops the unit and leaves the failure as the task's last word."""
    first = await agents.start(agents.agent(fake_runtime))
    history, retired = make_task(first.node_id), make_task(first.node_id)
    for task in (history, retired):
        await put_task(agent_store, task)
        await eventually(lambda t=task: state_is(agent_store, t.id, TaskState.RUNNING))
    await agents.stop(first)
    for task in (history, retired):  # written final while the units run on
        running = await status_of(agent_store, task.id)
        assert running is not None
        failed = running.model_copy(update={"state": TaskState.FAILED, "error": "lost"})
        await agent_store.put(keys.status(task.id), failed.dump())
    await set_desired(agent_store, retired, DesiredState.SHUTDOWN)

    await agents.start(agents.agent(fake_runtime, resync=0.2))

    async def both_stopped() -> bool:
        return all(fake_runtime.units[t.id].state.terminal for t in (history, retired))

    await eventually(both_stopped, what="the leftover units stopped")
    for task in (history, retired):
        final = await status_of(agent_store, task.id)
        assert final is not None
        assert (final.state, final.error) == (TaskState.FAILED, "lost")
    assert sorted(fake_runtime.starts) == sorted([history.id, retired.id])  # none restarted
