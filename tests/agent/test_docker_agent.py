"""The agent on a real Docker Engine (the harness's dockerd), with the busybox test image.

The same promises as the fake-runtime tests, where only a real engine can break them:
statuses carry real container ids; an exit code comes from the container; an agent
restart or SIGKILL leaves containers running and the next agent adopts them (same ids,
never restarted); a leftover container of the cluster is removed, and a container
without shoal's labels is never touched.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controlplane import keys
from controlplane.agent.identity import Identity, save_identity
from controlplane.agent.runtime import LABEL_CLUSTER, LABEL_NODE, LABEL_TASK
from controlplane.models import Task, TaskSpec
from controlplane.models.task import DesiredState, TaskState
from discovery import open_store
from tests.agent.conftest import (
    AgentRunner,
    FlakyStore,
    Spawner,
    docker_runtime,
    eventually,
    put_task,
    registered,
    set_desired,
    state_is,
    status_of,
    write_cluster,
)
from tests.harness.images import ensure_busybox_image, shell_until_sigterm

pytestmark = pytest.mark.docker


@pytest.fixture(scope="session")
def agent_image(docker_client: Any) -> str:
    return ensure_busybox_image(docker_client)


@pytest.fixture
async def docker_store(memory_url: str, cluster_id: str) -> AsyncIterator[FlakyStore]:
    store = FlakyStore(await open_store(memory_url))
    await write_cluster(store, cluster_id)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def docker_agents(docker_store: FlakyStore, tmp_path: Path) -> AsyncIterator[AgentRunner]:
    running = AgentRunner(docker_store, tmp_path)
    try:
        yield running
    finally:
        await running.close()


def container_task(node_id: str, image: str, command: list[str], *, name: str = "t") -> Task:
    return Task(
        id=f"{name}-{uuid.uuid4().hex[:8]}",
        service="web",
        slot=1,
        node_id=node_id,
        spec_version=1,
        spec=TaskSpec(image=image, command=command, stop_grace_seconds=2.0),
        created=time.time(),
    )


async def inspect(client: Any, container_id: str) -> dict[str, Any] | None:
    import docker.errors

    try:
        info: dict[str, Any] = await asyncio.to_thread(client.api.inspect_container, container_id)
    except docker.errors.NotFound:
        return None
    return info


async def test_container_runs_exits_stops_and_is_removed(
    docker_store: FlakyStore,
    docker_agents: AgentRunner,
    dockerd: str,
    docker_client: Any,
    agent_image: str,
) -> None:
    agent = await docker_agents.start(docker_agents.agent(docker_runtime(dockerd)))
    server = container_task(agent.node_id, agent_image, shell_until_sigterm(), name="server")
    failing = container_task(agent.node_id, agent_image, ["sh", "-c", "exit 3"], name="exit3")
    await put_task(docker_store, server)
    await put_task(docker_store, failing)

    running = await eventually(
        lambda: state_is(docker_store, server.id, TaskState.RUNNING), within=30.0
    )
    info = await inspect(docker_client, running.container_id)
    assert info is not None
    assert info["State"]["Running"]
    assert info["Config"]["Labels"][LABEL_TASK] == server.id
    failed = await eventually(
        lambda: state_is(docker_store, failing.id, TaskState.FAILED), within=30.0
    )
    assert failed.exit_code == 3
    exited = await inspect(docker_client, failed.container_id)
    assert exited is not None
    assert exited["RestartCount"] == 0
    assert not exited["State"]["Running"]

    await set_desired(docker_store, server, DesiredState.SHUTDOWN)
    await eventually(lambda: state_is(docker_store, server.id, TaskState.SHUTDOWN), within=15.0)
    stopped = await inspect(docker_client, running.container_id)
    assert stopped is not None
    assert not stopped["State"]["Running"]

    await docker_store.delete(keys.task(agent.node_id, server.id))

    async def removed() -> bool:
        return (
            await inspect(docker_client, running.container_id) is None
            and await status_of(docker_store, server.id) is None
        )

    await eventually(removed, within=15.0, what="container removed")


async def test_restarted_agent_adopts_five_running_containers(
    docker_store: FlakyStore,
    docker_agents: AgentRunner,
    dockerd: str,
    docker_client: Any,
    agent_image: str,
) -> None:
    first = await docker_agents.start(docker_agents.agent(docker_runtime(dockerd)))
    tasks = [container_task(first.node_id, agent_image, shell_until_sigterm()) for _ in range(5)]
    for task in tasks:
        await put_task(docker_store, task)
    started: dict[str, tuple[str, str]] = {}
    for task in tasks:
        status = await eventually(
            lambda t=task: state_is(docker_store, t.id, TaskState.RUNNING), within=60.0
        )
        info = await inspect(docker_client, status.container_id)
        assert info is not None
        started[task.id] = (status.container_id, info["State"]["StartedAt"])
    await docker_agents.stop(first)

    second = await docker_agents.start(docker_agents.agent(docker_runtime(dockerd)))
    assert second.node_id == first.node_id
    await asyncio.sleep(1.0)  # a resync has run
    for task in tasks:
        container_id, started_at = started[task.id]
        info = await inspect(docker_client, container_id)
        assert info is not None
        assert info["State"]["Running"]
        assert info["State"]["StartedAt"] == started_at  # never restarted
        status = await status_of(docker_store, task.id)
        assert status is not None
        assert (status.state, status.container_id) == (TaskState.RUNNING, container_id)

    # statuses resume: an adopted container's exit is reported
    await asyncio.to_thread(docker_client.api.kill, started[tasks[0].id][0], "KILL")
    failed = await eventually(
        lambda: state_is(docker_store, tasks[0].id, TaskState.FAILED), within=15.0
    )
    assert failed.exit_code == 137


async def test_leftover_container_is_removed_and_an_unlabelled_one_survives(
    docker_store: FlakyStore,
    docker_agents: AgentRunner,
    dockerd: str,
    docker_client: Any,
    agent_image: str,
    cluster_id: str,
    tmp_path: Path,
) -> None:
    node_id = f"node-{uuid.uuid4().hex[:8]}"
    Identity(node_id=node_id, cluster_id=cluster_id, discovery="memory://x")

    save_identity(
        tmp_path / "agent", Identity(node_id=node_id, cluster_id=cluster_id, discovery="")
    )
    command = shell_until_sigterm()
    leftover = await asyncio.to_thread(
        docker_client.containers.run,
        agent_image,
        command,
        detach=True,
        labels={LABEL_CLUSTER: cluster_id, LABEL_NODE: node_id, LABEL_TASK: "gone-task"},
    )
    bystander = await asyncio.to_thread(
        docker_client.containers.run, agent_image, command, detach=True
    )
    try:
        await docker_agents.start(docker_agents.agent(docker_runtime(dockerd)))

        async def cleaned() -> bool:
            return await inspect(docker_client, leftover.id) is None

        await eventually(cleaned, within=20.0, what="leftover container removed")
        info = await inspect(docker_client, bystander.id)
        assert info is not None
        assert info["State"]["Running"]
    finally:
        await asyncio.to_thread(bystander.remove, force=True)


async def test_sigkilled_agent_leaves_its_containers_running(
    file_url: str,
    dockerd: str,
    docker_client: Any,
    agent_image: str,
    spawn: Spawner,
    tmp_path: Path,
) -> None:
    store = await open_store(file_url)
    state_dir = tmp_path / "state"
    agent = spawn(
        *["--discovery", file_url, "--runtime", "docker", "--docker-host", dockerd],
        *["--state-dir", str(state_dir), "--heartbeat", "1s", "--advertise-addr", "127.0.0.6"],
    )
    container_id = ""
    try:
        node = (await registered(store, state_dir, agent)).id
        task = container_task(node, agent_image, shell_until_sigterm())
        await put_task(store, task)
        status = await eventually(lambda: state_is(store, task.id, TaskState.RUNNING), within=30.0)
        container_id = status.container_id
        agent.kill()

        async def expired() -> bool:
            return await store.get(keys.node(node)) is None

        await eventually(expired, within=5.0, what="node key expired")
        info = await inspect(docker_client, container_id)
        assert info is not None
        assert info["State"]["Running"]
    finally:
        if container_id:
            await asyncio.to_thread(docker_client.api.remove_container, container_id, force=True)
        await store.close()
