"""The runtime contract, as the agent relies on it, for every runtime it applies to.

What an agent needs from a runtime: `ensure` runs a task exactly once however often it
is called; the task sees its environment; an exit is observed with its code and
announced by `changes()` at once; `stop` honours the stop signal and the grace period;
`remove` leaves nothing behind; `observe` shows this node's units of this cluster and
nothing else, and nothing else is ever touched; and a restarted agent finds its units
as they are, with the same ids.
"""

from __future__ import annotations

import time

import pytest

from controlplane.agent.runtime import Observed
from controlplane.models.task import TaskState
from tests.agent.runtime.conftest import (
    Kit,
    announced,
    kinds,
    next_change,
    units_of,
    wait_for_state,
)
from tests.harness.images import shell_until_sigterm

# A command that ignores SIGTERM (its children inherit that), so only SIGKILL ends it.
IGNORES_SIGTERM = ["/bin/sh", "-c", "trap '' TERM; echo ready; sleep 3600 & wait $!"]


def running(unit: Observed | None) -> bool:
    return unit is not None and unit.state is TaskState.RUNNING


def ended(unit: Observed | None) -> bool:
    return unit is not None and unit.state.terminal


@pytest.mark.parametrize("kit", kinds(), indirect=True)
async def test_ensure_runs_the_task_once(kit: Kit) -> None:
    task = kit.task(shell_until_sigterm())

    first = await kit.runtime.ensure(task)
    again = await kit.runtime.ensure(task)

    assert first.state is TaskState.RUNNING
    assert first.task_id == task.id
    assert first.cluster_id == kit.cluster_id
    assert first.service == "web"
    assert first.started_at is not None
    assert again.container_id == first.container_id
    [unit] = units_of(await kit.runtime.observe(), task.id)
    assert unit.state is TaskState.RUNNING
    assert unit.container_id == first.container_id


@pytest.mark.parametrize("kit", kinds("docker", "process"), indirect=True)
async def test_the_task_sees_its_environment(kit: Kit) -> None:
    task = kit.task(
        shell_until_sigterm("env"),
        env={"GREETING": "hello world", "SHOAL_TEST_EMPTY": ""},
    )

    unit = await kit.runtime.ensure(task)

    printed = await kit.output(unit, contains="GREETING=hello world")
    assert "SHOAL_TEST_EMPTY=\n" in printed


@pytest.mark.parametrize("kit", kinds("docker", "process"), indirect=True)
@pytest.mark.parametrize(
    ("code", "state"), [(3, TaskState.FAILED), (0, TaskState.COMPLETE)], ids=["exit3", "exit0"]
)
async def test_an_exit_is_observed_and_announced(kit: Kit, code: int, state: TaskState) -> None:
    changes = kit.runtime.changes()
    task = kit.task(["/bin/sh", "-c", f"sleep 0.2; exit {code}"])
    await kit.runtime.ensure(task)

    # The id is announced for the start and for the exit; within a second or two of
    # the exit, observe() must tell how it ended.
    deadline = time.monotonic() + 5.0
    unit: Observed | None = None
    while not ended(unit):
        assert await next_change(changes, within=deadline - time.monotonic()) == task.id
        [unit] = units_of(await kit.runtime.observe(), task.id)

    assert unit is not None
    assert unit.state is state
    assert unit.exit_code == code
    if code:
        assert "non-zero exit (3)" in unit.message
    assert unit.started_at is not None
    assert unit.finished_at is not None
    assert unit.finished_at >= unit.started_at
    assert unit.endpoints == ()


@pytest.mark.parametrize("kit", kinds(), indirect=True)
async def test_stop_ends_the_task_well_within_its_grace(kit: Kit) -> None:
    task = kit.task(shell_until_sigterm("echo ready"))
    unit = await kit.runtime.ensure(task)
    if kit.kind != "hollow":  # a signal before the trap is set would kill it: exit 143
        await kit.output(unit, contains="ready")

    started = time.monotonic()
    stopped = await kit.runtime.stop(task.id, grace=10)
    elapsed = time.monotonic() - started

    assert elapsed < 3.0, f"stop took {elapsed:.1f} s although the task exits on SIGTERM"
    assert stopped is not None
    assert stopped.state is TaskState.COMPLETE
    assert stopped.exit_code == 0
    [unit] = units_of(await kit.runtime.observe(), task.id)
    assert unit.state is TaskState.COMPLETE
    assert await kit.runtime.stop("no-such-task", grace=1) is None


@pytest.mark.parametrize("kit", kinds("docker", "process"), indirect=True)
async def test_stop_kills_a_task_that_ignores_the_signal_after_the_grace(kit: Kit) -> None:
    task = kit.task(IGNORES_SIGTERM)
    await kit.output(await kit.runtime.ensure(task), contains="ready")

    started = time.monotonic()
    stopped = await kit.runtime.stop(task.id, grace=1)
    elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 5.0, f"stop took {elapsed:.1f} s with a grace of 1 s"
    assert stopped is not None
    assert stopped.state is TaskState.FAILED
    assert stopped.exit_code == 137  # SIGKILL


@pytest.mark.parametrize("kit", kinds("docker", "process"), indirect=True)
async def test_stop_sends_the_tasks_own_stop_signal(kit: Kit) -> None:
    task = kit.task(
        ["/bin/sh", "-c", "trap '' TERM; trap 'exit 0' INT; echo ready; sleep 3600 & wait $!"],
        stop_signal="SIGINT",
    )
    await kit.output(await kit.runtime.ensure(task), contains="ready")

    started = time.monotonic()
    stopped = await kit.runtime.stop(task.id, grace=10)

    assert time.monotonic() - started < 3.0, "SIGINT was not sent (SIGTERM is ignored)"
    assert stopped is not None
    assert stopped.exit_code == 0


@pytest.mark.parametrize("kit", kinds(), indirect=True)
async def test_remove_leaves_nothing_behind(kit: Kit) -> None:
    task = kit.task(shell_until_sigterm())
    await kit.runtime.ensure(task)

    await kit.runtime.remove(task.id)

    assert units_of(await kit.runtime.observe(), task.id) == []
    assert units_of(await kit.restarted().observe(), task.id) == []
    await kit.runtime.remove(task.id)  # unknown now: no error
    await kit.runtime.remove("never-existed")


@pytest.mark.parametrize("kit", kinds("docker", "process"), indirect=True)
async def test_a_missing_executable_fails_the_task_with_the_reason(kit: Kit) -> None:
    task = kit.task(["/no/such/program", "--flag"])

    unit = await kit.runtime.ensure(task)

    assert unit.state is TaskState.FAILED
    assert unit.exit_code == 127
    assert "/no/such/program" in unit.message
    [seen] = units_of(await kit.runtime.observe(), task.id)
    assert seen.state is TaskState.FAILED


@pytest.mark.parametrize("kit", kinds("docker", "process"), indirect=True)
async def test_observe_sees_only_this_nodes_units_and_touches_nothing_else(kit: Kit) -> None:
    other_cluster = kit.another(cluster_id=f"{kit.cluster_id}-other")
    other_node = kit.another(node_id=f"{kit.node_id}-other")
    theirs = [kit.task(shell_until_sigterm()), kit.task(shell_until_sigterm())]
    await other_cluster.ensure(theirs[0])
    await other_node.ensure(theirs[1])
    mine = kit.task(shell_until_sigterm())
    await kit.runtime.ensure(mine)

    assert [unit.task_id for unit in await kit.runtime.observe()] == [mine.id]
    for task in theirs:  # asking to stop or remove someone else's task does nothing
        assert await kit.runtime.stop(task.id, grace=1) is None
        await kit.runtime.remove(task.id)
    await kit.runtime.remove(mine.id)

    for runtime, task in ((other_cluster, theirs[0]), (other_node, theirs[1])):
        [unit] = units_of(await runtime.observe(), task.id)
        assert unit.state is TaskState.RUNNING


@pytest.mark.parametrize("kit", kinds("docker", "process"), indirect=True)
async def test_a_restarted_agent_adopts_its_units_with_the_same_ids(kit: Kit) -> None:
    alive = kit.task(shell_until_sigterm("echo ready"))
    failed = kit.task(["/bin/sh", "-c", "exit 3"])
    first_alive = await kit.runtime.ensure(alive)
    await kit.output(first_alive, contains="ready")
    await kit.runtime.ensure(failed)
    await wait_for_state(kit.runtime, failed.id, ended)
    before = {unit.task_id: unit for unit in await kit.runtime.observe()}
    await kit.runtime.close()

    restarted = kit.restarted()
    after = {unit.task_id: unit for unit in await restarted.observe()}

    assert set(after) == {alive.id, failed.id}
    assert after[alive.id].container_id == first_alive.container_id
    assert after[alive.id].state is TaskState.RUNNING
    assert after[failed.id].state is TaskState.FAILED
    assert after[failed.id].exit_code == 3
    assert after[failed.id].container_id == before[failed.id].container_id
    again = await restarted.ensure(alive)
    assert again.container_id == first_alive.container_id
    # The adopted unit is fully managed: its exit is announced and observed.
    changes = restarted.changes()
    stopped = await restarted.stop(alive.id, grace=10)
    assert stopped is not None
    assert stopped.state is TaskState.COMPLETE
    await announced(changes, alive.id, within=5.0)
