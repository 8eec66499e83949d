"""What only the Docker runtime promises, checked against the harness's real engine.

Ports published on a loopback address answer from inside the container; every field of
the task spec lands on the container (and is visible from inside it where it can be);
a missing image is rejected fast with the engine's words, because nothing can be pulled
here; containers shoal did not label are left alone even when they hold a task's name;
and a container created but never started (an agent that died in between) is started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from controlplane.agent.runtime import LABEL_CLUSTER, LABEL_NODE, LABEL_TASK, TaskRejected
from controlplane.agent.runtime.docker import container_name
from controlplane.models.service import PortConfig, PublishMode
from controlplane.models.task import TaskState
from tests.agent.runtime.conftest import ADVERTISE, Kit, kinds, units_of
from tests.harness.images import http_hostname_server, shell_until_sigterm
from tests.harness.process import free_port

pytestmark = pytest.mark.parametrize("kit", kinds("docker"), indirect=True)


async def test_published_ports_answer_with_the_containers_hostname(
    kit: Kit, docker_client: Any, loopback_http: Callable[[str, int], str]
) -> None:
    host_port = free_port(ADVERTISE)
    task = kit.task(
        http_hostname_server(80),
        ports=[
            PortConfig(target=80),  # ingress: the engine picks the host port
            PortConfig(target=80, published=host_port, mode=PublishMode.HOST),
        ],
    )

    unit = await kit.runtime.ensure(task)

    hostname = docker_client.api.inspect_container(unit.container_id)["Config"]["Hostname"]
    published = sorted(endpoint.published_port for endpoint in unit.endpoints)
    assert len(published) == 2
    assert host_port in published
    assert all(endpoint.host_ip == ADVERTISE for endpoint in unit.endpoints)
    assert all(endpoint.target_port == 80 for endpoint in unit.endpoints)
    for port in published:
        body = await asyncio.to_thread(loopback_http, ADVERTISE, port)
        assert body.strip() == hostname
    [seen] = units_of(await kit.runtime.observe(), task.id)
    assert seen.endpoints == unit.endpoints
    started = time.monotonic()
    stopped = await kit.runtime.stop(task.id, grace=10)
    assert time.monotonic() - started < 3.0, "the HTTP server did not exit on SIGTERM"
    assert stopped is not None
    assert stopped.exit_code == 0


async def test_the_spec_reaches_the_container(kit: Kit, docker_client: Any) -> None:
    task = kit.task(
        ["/bin/sh", "-c"],
        args=["trap 'exit 0' TERM; id -u; pwd; hostname; sleep 3600 & wait $!"],
        workdir="/tmp",
        user="65534",
        hostname="web-1",
        init=True,
        labels={"tier": "front", LABEL_CLUSTER: "spoofed"},
        nano_cpus_limit=500_000_000,
        memory_limit_bytes=64 * 1024**2,
        stop_signal="SIGTERM",
        stop_grace_seconds=7,
    )

    unit = await kit.runtime.ensure(task)

    printed = await kit.output(unit, contains="web-1")
    assert printed.split()[:3] == ["65534", "/tmp", "web-1"]
    info = docker_client.api.inspect_container(unit.container_id)
    assert info["Name"] == f"/{container_name(task)}"
    labels = info["Config"]["Labels"]
    assert labels["tier"] == "front"
    assert labels[LABEL_CLUSTER] == kit.cluster_id  # shoal's labels win over the spec's
    assert labels[LABEL_NODE] == kit.node_id
    assert labels[LABEL_TASK] == task.id
    assert labels["com.shoal.service"] == "web"
    assert labels["com.shoal.slot"] == str(task.slot)
    host = info["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == 64 * 1024**2
    assert host["RestartPolicy"]["Name"] == "no"  # restarts are the reconciler's decision
    assert host["Init"] is True
    assert info["Config"]["StopSignal"] == "SIGTERM"
    assert info["Config"]["StopTimeout"] == 7


async def test_a_missing_image_is_rejected_quickly_with_the_engines_reason(
    kit: Kit, docker_client: Any
) -> None:
    task = kit.task(["true"])
    task.spec.image = "shoal-test/no-such-image:1"

    started = time.monotonic()
    with pytest.raises(TaskRejected) as rejected:
        await kit.runtime.ensure(task)
    elapsed = time.monotonic() - started

    assert elapsed < 10.0, f"rejecting took {elapsed:.1f} s"
    reason = str(rejected.value)
    assert "shoal-test/no-such-image:1" in reason
    assert "could not be pulled: " in reason
    assert reason.split("could not be pulled: ", 1)[1].strip()  # the engine's own words
    assert units_of(await kit.runtime.observe(), task.id) == []


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"image": "Not/Lower:1"}, "must be lowercase"),
        ({"memory_limit_bytes": 1024}, "Minimum memory limit"),
        ({"stop_signal": "SIGBOGUS"}, "Invalid signal"),
    ],
    ids=["image-reference", "memory", "stop-signal"],
)
async def test_a_spec_the_engine_refuses_is_rejected_with_its_reason(
    kit: Kit, spec: dict[str, Any], reason: str
) -> None:
    task = kit.task(["true"])
    for field, value in spec.items():
        setattr(task.spec, field, value)

    with pytest.raises(TaskRejected, match=reason):
        await kit.runtime.ensure(task)
    assert units_of(await kit.runtime.observe(), task.id) == []


async def test_containers_without_shoals_labels_are_left_alone(
    kit: Kit, docker_client: Any
) -> None:
    task = kit.task(shell_until_sigterm())
    stranger = docker_client.api.create_container(
        kit.image, shell_until_sigterm(), name=container_name(task)
    )["Id"]
    try:
        docker_client.api.start(stranger)

        with pytest.raises(TaskRejected, match="taken by a container shoal did not create"):
            await kit.runtime.ensure(task)
        assert units_of(await kit.runtime.observe(), task.id) == []
        await kit.runtime.remove(task.id)
        assert await kit.runtime.stop(task.id, grace=1) is None

        state = docker_client.api.inspect_container(stranger)["State"]
        assert state["Running"] is True
    finally:
        docker_client.api.remove_container(stranger, force=True)


async def test_a_container_created_but_never_started_is_started(
    kit: Kit, docker_client: Any
) -> None:
    task = kit.task(shell_until_sigterm())
    labels = {LABEL_CLUSTER: kit.cluster_id, LABEL_NODE: kit.node_id, LABEL_TASK: task.id}
    created = docker_client.api.create_container(
        kit.image, shell_until_sigterm(), name=container_name(task), labels=labels
    )["Id"]

    [before] = units_of(await kit.runtime.observe(), task.id)
    unit = await kit.runtime.ensure(task)

    assert before.state is TaskState.STARTING
    assert unit.state is TaskState.RUNNING
    assert unit.container_id == created


async def test_describe_reports_the_engines_node(kit: Kit, docker_client: Any) -> None:
    info = docker_client.info()

    node = await kit.runtime.describe()

    assert node.hostname == info["Name"]
    assert node.os == "linux"
    assert node.arch == info["Architecture"]
    assert node.nano_cpus == info["NCPU"] * 1_000_000_000
    assert node.memory_bytes == info["MemTotal"] > 0
    assert node.engine_version == info["ServerVersion"]
