"""One contract suite, three runtimes: the `kit` fixture hands a test one of them.

A `Kit` is a runtime of a fresh cluster plus what a test needs around it: tasks whose
command suits that runtime, a way to read what a task printed, a way to build a second
runtime with the same identity (an agent restart), and cleanup that removes everything
the test started even when it fails. Tests choose the runtimes they apply to with
`@pytest.mark.parametrize("kit", kinds("docker", "process"), indirect=True)`; the docker
kit uses the harness's real engine and the busybox test image.

Containers publish on a loopback address picked per session (127.0.0.x), so host-mode
ports never collide with other engineers' servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controlplane.agent.runtime import Observed, Runtime
from controlplane.agent.runtime.docker import DockerRuntime
from controlplane.agent.runtime.hollow import HollowRuntime
from controlplane.agent.runtime.process import ProcessRuntime
from controlplane.models.task import Task, TaskSpec
from tests.harness.images import ensure_busybox_image

ALL_KINDS = ("docker", "process", "hollow")
ADVERTISE = f"127.0.0.{random.randint(2, 254)}"
HOLLOW_CPUS = 4_000_000_000
HOLLOW_MEMORY = 8 * 1024**3

_slots = itertools.count(1)


def kinds(*names: str) -> list[Any]:
    """Parameters for the `kit` fixture; the docker one carries the `docker` mark."""
    return [
        pytest.param(name, id=name, marks=[pytest.mark.docker] if name == "docker" else [])
        for name in names or ALL_KINDS
    ]


@dataclass
class Kit:
    kind: str
    cluster_id: str
    node_id: str
    image: str
    build: Callable[..., Runtime]  # build(node_id=..., cluster_id=...) -> a new runtime
    read_output: Callable[[Runtime, Observed], Awaitable[str]]
    runtimes: list[Runtime] = field(default_factory=list)

    @property
    def runtime(self) -> Runtime:
        return self.runtimes[0]

    def restarted(self) -> Runtime:
        """A new runtime object with the same identity, as after an agent restart."""
        return self.another()

    def another(self, *, node_id: str | None = None, cluster_id: str | None = None) -> Runtime:
        runtime = self.build(
            node_id=node_id or self.node_id, cluster_id=cluster_id or self.cluster_id
        )
        self.runtimes.append(runtime)
        return runtime

    def task(self, command: list[str] | None = None, **spec: Any) -> Task:
        slot = next(_slots)
        return Task(
            id=f"t{uuid.uuid4().hex[:12]}",
            service="web",
            slot=slot,
            node_id=self.node_id,
            spec_version=1,
            spec=TaskSpec(image=self.image, command=command, **spec),
        )

    async def output(self, observed: Observed, *, contains: str, within: float = 5.0) -> str:
        """What the task printed, once it contains `contains` (polled for `within` s)."""
        deadline = time.monotonic() + within
        text = ""
        while time.monotonic() < deadline:
            text = await self.read_output(self.runtime, observed)
            if contains in text:
                return text
            await asyncio.sleep(0.05)
        raise AssertionError(f"{contains!r} not printed within {within} s; output: {text!r}")


@pytest.fixture(scope="session")
def busybox_image(docker_client: Any) -> str:
    return ensure_busybox_image(docker_client)


@pytest.fixture
async def kit(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Kit]:
    kind: str = getattr(request, "param", "hollow")
    cluster_id = f"test-{uuid.uuid4().hex[:10]}"
    node_id = f"node-{uuid.uuid4().hex[:8]}"
    kit = _make_kit(request, kind=kind, cluster_id=cluster_id, node_id=node_id, tmp=tmp_path)
    kit.another()
    try:
        yield kit
    finally:
        await _cleanup(request, kit)


def _make_kit(
    request: pytest.FixtureRequest, *, kind: str, cluster_id: str, node_id: str, tmp: Path
) -> Kit:
    if kind == "docker":
        client = request.getfixturevalue("docker_client")
        image: str = request.getfixturevalue("busybox_image")
        host: str = request.getfixturevalue("dockerd")

        def build_docker(*, node_id: str, cluster_id: str) -> Runtime:
            return DockerRuntime(
                cluster_id=cluster_id, node_id=node_id, advertise_addr=ADVERTISE, docker_host=host
            )

        async def docker_output(runtime: Runtime, observed: Observed) -> str:
            logs: bytes = await asyncio.to_thread(client.api.logs, observed.container_id)
            return logs.decode(errors="replace")

        return Kit(kind, cluster_id, node_id, image, build_docker, docker_output)
    if kind == "process":
        state_dir = tmp / "agent-state"

        def build_process(*, node_id: str, cluster_id: str) -> Runtime:
            return ProcessRuntime(
                cluster_id=cluster_id,
                node_id=node_id,
                state_dir=state_dir,
                advertise_addr="127.0.0.1",
            )

        async def process_output(runtime: Runtime, observed: Observed) -> str:
            assert isinstance(runtime, ProcessRuntime)
            path = runtime.log_path(observed.task_id)
            return path.read_text(errors="replace") if path.exists() else ""

        return Kit(kind, cluster_id, node_id, "host", build_process, process_output)
    if kind == "hollow":

        def build_hollow(*, node_id: str, cluster_id: str) -> Runtime:
            return HollowRuntime(
                node_id=node_id,
                cluster_id=cluster_id,
                nano_cpus=HOLLOW_CPUS,
                memory_bytes=HOLLOW_MEMORY,
            )

        async def no_output(runtime: Runtime, observed: Observed) -> str:
            return ""

        return Kit(kind, cluster_id, node_id, "hollow", build_hollow, no_output)
    raise ValueError(f"unknown runtime kind {kind!r}")


async def _cleanup(request: pytest.FixtureRequest, kit: Kit) -> None:
    """Remove every unit the test's runtimes know, then anything left with its label."""
    for runtime in reversed(kit.runtimes):
        for unit in await runtime.observe():
            await runtime.remove(unit.task_id)
        await runtime.close()
    if kit.kind == "docker":
        client = request.getfixturevalue("docker_client")
        leftovers = client.api.containers(
            all=True, filters={"label": f"com.shoal.cluster={kit.cluster_id}"}
        )
        for container in leftovers:
            client.api.remove_container(container["Id"], force=True)


async def next_change(changes: AsyncIterator[str], *, within: float) -> str:
    """The next task id `changes` yields, failing the test after `within` seconds."""
    return await asyncio.wait_for(anext(changes), within)


async def announced(changes: AsyncIterator[str], task_id: str, *, within: float) -> None:
    """Wait until `changes` yields `task_id` (other ids may come first: duplicates and
    replays are allowed by the contract, losses are not)."""
    deadline = time.monotonic() + within
    while await next_change(changes, within=deadline - time.monotonic()) != task_id:
        pass


async def wait_for_state(
    runtime: Runtime,
    task_id: str,
    accept: Callable[[Observed | None], bool],
    *,
    within: float = 5.0,
) -> Observed | None:
    """Poll `observe()` until the task's unit satisfies `accept` (None: no such unit)."""
    deadline = time.monotonic() + within
    current: Observed | None = None
    while time.monotonic() < deadline:
        current = next((u for u in await runtime.observe() if u.task_id == task_id), None)
        if accept(current):
            return current
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} did not reach the expected state: {current}")


def units_of(observed: list[Observed], task_id: str) -> list[Observed]:
    return [unit for unit in observed if unit.task_id == task_id]


@pytest.fixture
def loopback_http() -> Callable[[str, int], str]:
    """GET http://host:port/ and return the body, retrying until the server listens."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy

    def get(host: str, port: int) -> str:
        deadline = time.monotonic() + 5.0
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with opener.open(f"http://{host}:{port}/", timeout=2) as response:
                    body: bytes = response.read()
                    return body.decode()
            except OSError as exc:
                last = exc
                time.sleep(0.05)
        raise AssertionError(f"nothing answered on {host}:{port}: {last}")

    return get
