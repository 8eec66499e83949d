"""The hollow runtime is for scale tests: it must be nearly free, and controllable.

One process hosts a thousand hollow nodes, so an instance may not own a thread or an
asyncio task; a scale test makes tasks fail with `exit_task` and expects the agent to
hear of it through `changes()` like any other exit.
"""

from __future__ import annotations

import asyncio
import threading
import time

from controlplane.agent.runtime.hollow import HollowRuntime
from controlplane.models.task import Task, TaskSpec, TaskState


def hollow_task(task_id: str, node_id: str) -> Task:
    return Task(
        id=task_id,
        service="scale",
        slot=1,
        node_id=node_id,
        spec_version=1,
        spec=TaskSpec(image="shoal-test/busybox:latest"),
    )


async def test_a_thousand_hollow_nodes_cost_no_threads_or_tasks() -> None:
    threads = threading.active_count()
    tasks = len(asyncio.all_tasks())
    started = time.monotonic()

    nodes = [
        HollowRuntime(node_id=f"n{index}", nano_cpus=4_000_000_000, memory_bytes=8 << 30)
        for index in range(1000)
    ]
    streams = [node.changes() for node in nodes]
    for index, node in enumerate(nodes):
        unit = await node.ensure(hollow_task(f"t{index}", f"n{index}"))
        assert unit.state is TaskState.RUNNING
    for index, node in enumerate(nodes):  # an exit is announced (a start needs not be)
        node.exit_task(f"t{index}", exit_code=1)
    for index, stream in enumerate(streams):
        assert await asyncio.wait_for(anext(stream), 1) == f"t{index}"

    assert time.monotonic() - started < 2.0
    assert threading.active_count() == threads
    assert len(asyncio.all_tasks()) == tasks
    for node in nodes:
        await node.close()


async def test_exit_task_ends_a_task_and_announces_it() -> None:
    node = HollowRuntime(node_id="n1", nano_cpus=1, memory_bytes=1)
    await node.ensure(hollow_task("t1", "n1"))
    changes = node.changes()

    node.exit_task("t1", exit_code=3)

    assert await asyncio.wait_for(anext(changes), 1) == "t1"
    [unit] = await node.observe()
    assert (unit.state, unit.exit_code) == (TaskState.FAILED, 3)
    assert unit.message == "task: non-zero exit (3)"


async def test_describe_reports_the_pretend_capacity() -> None:
    node = HollowRuntime(node_id="n7", nano_cpus=8_000_000_000, memory_bytes=16 << 30)

    description = await node.describe()

    assert description.hostname == "hollow-n7"
    assert (description.nano_cpus, description.memory_bytes) == (8_000_000_000, 16 << 30)
