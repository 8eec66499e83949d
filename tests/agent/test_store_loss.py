"""Losing the store, for real: the agent's etcd goes away for a while and comes back.

What operators rely on: a store outage never stops a running task, the node is back in
the cluster once the store is, and what happened to the tasks meanwhile (a unit that
exited) is reported then. Runs on a private etcd member (the harness's, stopped with
SIGTERM and started again on the same data), with the process runtime and with Docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controlplane import keys
from controlplane.agent.runtime_factory import RuntimeOptions, runtime_factory
from controlplane.models import Task, TaskSpec
from controlplane.models.task import TaskState
from discovery import Store, open_store
from tests.agent.conftest import (
    AgentRunner,
    eventually,
    put_task,
    state_is,
    status_of,
    write_cluster,
)
from tests.harness.etcd import EtcdServer
from tests.harness.images import ensure_busybox_image, shell_until_sigterm

pytestmark = [pytest.mark.etcd, pytest.mark.slow]

OUTAGE = 15.0  # seconds
HEARTBEAT = 1.0  # TTL 3 s: the outage outlasts the node's lease five times over


@dataclass
class Units:
    """How to run, kill and check one runtime's units from the test's side."""

    options: RuntimeOptions
    spec: TaskSpec
    kill: Callable[[str], Awaitable[None]]
    alive: Callable[[str], Awaitable[bool]]
    killed_exit_code: int
    started: list[str] = field(default_factory=list)  # removed after the test


def process_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
async def units(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Units]:
    if request.param == "process":

        async def kill_process(unit: str) -> None:
            os.killpg(int(unit), signal.SIGTERM)

        async def process_running(unit: str) -> bool:
            return process_alive(int(unit))

        processes = Units(
            options=RuntimeOptions(name="process", advertise_addr="127.0.0.7", state_dir=tmp_path),
            spec=TaskSpec(image="", command=["sleep", "300"], stop_grace_seconds=1.0),
            kill=kill_process,
            alive=process_running,
            killed_exit_code=128 + signal.SIGTERM,
        )
        yield processes
        for unit in processes.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(unit), signal.SIGKILL)
        return
    host: str = request.getfixturevalue("dockerd")
    client: Any = request.getfixturevalue("docker_client")

    async def kill_container(unit: str) -> None:
        await asyncio.to_thread(client.api.kill, unit, "KILL")

    async def container_running(unit: str) -> bool:
        info = await asyncio.to_thread(client.api.inspect_container, unit)
        return bool(info["State"]["Running"])

    containers = Units(
        options=RuntimeOptions(
            name="docker", advertise_addr="127.0.0.7", state_dir=tmp_path, docker_host=host
        ),
        spec=TaskSpec(
            image=ensure_busybox_image(client), command=shell_until_sigterm(), stop_grace_seconds=1
        ),
        kill=kill_container,
        alive=container_running,
        killed_exit_code=137,
    )
    yield containers
    for unit in containers.started:
        await asyncio.to_thread(client.api.remove_container, unit, force=True)


@pytest.fixture
async def etcd_store(etcd_private_server: EtcdServer) -> AsyncIterator[Store]:
    store = await open_store(etcd_private_server.url())
    await write_cluster(store, f"loss-{uuid.uuid4().hex[:8]}")
    try:
        yield store
    finally:
        await store.close()


async def test_units_keep_running_through_an_etcd_outage_and_the_node_returns(
    etcd_private_server: EtcdServer,
    etcd_store: Store,
    units: Units,
    tmp_path: Path,
) -> None:
    runner = AgentRunner(etcd_store, tmp_path)
    agent = runner.agent(runtime_factory(units.options), period=HEARTBEAT, resync=1.0)
    try:
        await runner.start(agent)
        tasks = [
            Task(
                id=f"unit-{i}",
                service="sleepers",
                slot=i,
                node_id=agent.node_id,
                spec_version=1,
                spec=units.spec,
                created=time.time(),
            )
            for i in range(3)
        ]
        for task in tasks:
            await put_task(etcd_store, task)
        ids = []
        for task in tasks:
            status = await eventually(
                lambda t=task: state_is(etcd_store, t.id, TaskState.RUNNING), within=30.0
            )
            ids.append(status.container_id)
            units.started.append(status.container_id)

        await asyncio.to_thread(etcd_private_server.stop)
        outage_ends = time.monotonic() + OUTAGE
        await asyncio.sleep(OUTAGE / 2)
        await units.kill(ids[0])  # a unit ends while the store is away
        await asyncio.sleep(max(0.0, outage_ends - time.monotonic()))
        for unit in ids[1:]:
            assert await units.alive(unit)  # nothing stopped for want of a store
        assert agent.reporter is not None
        assert agent.reporter.kept == 1  # the exit is kept, waiting for the store
        await asyncio.to_thread(etcd_private_server.start)

        async def back() -> bool:
            return await etcd_store.get(keys.node(agent.node_id)) is not None

        await eventually(back, within=15.0, what="node registered again")
        ended = await eventually(
            lambda: state_is(etcd_store, tasks[0].id, TaskState.FAILED), within=15.0
        )
        assert (ended.container_id, ended.exit_code) == (ids[0], units.killed_exit_code)
        await asyncio.sleep(3 * HEARTBEAT + 1)  # the heartbeat holds the node up again
        assert await back()
        for task, unit in zip(tasks[1:], ids[1:], strict=True):
            status = await status_of(etcd_store, task.id)
            assert status is not None
            assert (status.state, status.container_id) == (TaskState.RUNNING, unit)
            assert await units.alive(unit)
    finally:
        await runner.close()
