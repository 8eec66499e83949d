"""Losing the store, for real: the agent's etcd goes away for 20 s and comes back.

What operators rely on: a store outage never stops a running task, the node is back in
the cluster once the store is, and what happened to the tasks meanwhile (a unit that
exited) is reported then. Runs on a private etcd member (the harness's, stopped with
SIGTERM and started again on the same data) and the process runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane import keys
from controlplane.agent.runtime_factory import RuntimeOptions, runtime_factory
from controlplane.models import Task, TaskSpec
from controlplane.models.task import TaskState
from discovery import Store, open_store
from tests.agent.conftest import AgentRunner, eventually, put_task, state_is, status_of
from tests.harness.etcd import EtcdServer

pytestmark = [pytest.mark.etcd, pytest.mark.slow]

OUTAGE = 20.0
HEARTBEAT = 1.0  # TTL 3 s: the outage outlasts the node's lease several times over


@pytest.fixture
async def etcd_store(etcd_private_server: EtcdServer) -> AsyncIterator[Store]:
    store = await open_store(etcd_private_server.url())
    try:
        yield store
    finally:
        await store.close()


def sleeper(node_id: str, index: int) -> Task:
    return Task(
        id=f"sleeper-{index}",
        service="sleepers",
        slot=index,
        node_id=node_id,
        spec_version=1,
        spec=TaskSpec(image="", command=["sleep", "300"], stop_grace_seconds=1.0),
        created=time.time(),
    )


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_units_keep_running_through_an_etcd_outage_and_the_node_returns(
    etcd_private_server: EtcdServer, etcd_store: Store, tmp_path: Path
) -> None:
    runner = AgentRunner(etcd_store, tmp_path)
    options = RuntimeOptions(name="process", advertise_addr="127.0.0.7", state_dir=tmp_path / "rt")
    agent = runner.agent(runtime_factory(options), period=HEARTBEAT, resync=1.0)
    pids: list[int] = []
    try:
        await runner.start(agent)
        tasks = [sleeper(agent.node_id, i) for i in range(3)]
        for task in tasks:
            await put_task(etcd_store, task)
        for task in tasks:
            status = await eventually(
                lambda t=task: state_is(etcd_store, t.id, TaskState.RUNNING), within=15.0
            )
            pids.append(int(status.container_id))

        await asyncio.to_thread(etcd_private_server.stop)
        outage_ends = time.monotonic() + OUTAGE
        await asyncio.sleep(OUTAGE / 2)
        os.killpg(pids[0], signal.SIGTERM)  # a unit ends while the store is away
        await asyncio.sleep(max(0.0, outage_ends - time.monotonic()))
        assert all(alive(pid) for pid in pids[1:])  # nothing stopped for want of a store
        assert agent.reporter is not None
        assert agent.reporter.kept == 1  # the exit is kept, waiting for the store
        await asyncio.to_thread(etcd_private_server.start)

        async def back() -> bool:
            return await etcd_store.get(keys.node(agent.node_id)) is not None

        await eventually(back, within=15.0, what="node registered again")
        ended = await eventually(
            lambda: state_is(etcd_store, tasks[0].id, TaskState.FAILED), within=15.0
        )
        assert (ended.container_id, ended.exit_code) == (str(pids[0]), 128 + signal.SIGTERM)
        await asyncio.sleep(3 * HEARTBEAT + 1)  # the heartbeat holds the node up again
        assert await back()
        for task, pid in zip(tasks[1:], pids[1:], strict=True):
            status = await status_of(etcd_store, task.id)
            assert status is not None
            assert (status.state, status.container_id) == (TaskState.RUNNING, str(pid))
            assert alive(pid)
    finally:
        await runner.close()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
