"""Doubles and helpers for the agent's tests.

`FakeRuntime` is a unit-test double of the runtime seam: units are dict entries, a test
makes one exit with `exit_unit`, and it counts starts so that a test can tell adoption
from a restart. `FlakyStore` wraps a real store and can be taken "down" (every call
raises `StoreUnavailable`, the watch pauses) or made to answer the next watch with
`RevisionCompacted`. Both are for logic; the subprocess tests use the real runtimes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import pytest

from controlplane import keys
from controlplane.agent.agent import Agent, RuntimeFactory
from controlplane.agent.identity import Identity, load_identity
from controlplane.agent.runtime import (
    LABEL_CLUSTER,
    NodeDescription,
    Observed,
    Runtime,
    TaskRejected,
)
from controlplane.agent.runtime.docker import DockerRuntime
from controlplane.models import ClusterRecord, NodeInfo, Task, TaskSpec, TaskStatus
from controlplane.models.task import DesiredState, TaskState
from discovery import (
    Compare,
    Event,
    KeyValue,
    Lease,
    Listing,
    Op,
    RevisionCompacted,
    Store,
    StoreUnavailable,
    TxnResult,
    open_store,
)

CLUSTER_ID = "cluster-test"
REJECTED_IMAGE = "reject:me"

_ids = itertools.count(1)


class FakeRuntime(Runtime):
    """Units in a dict; `changes()` announces every state change."""

    name = "fake"

    def __init__(self, *, cluster_id: str = CLUSTER_ID) -> None:
        self.cluster_id = cluster_id
        self.units: dict[str, Observed] = {}
        self.starts: list[str] = []
        self.stops: list[str] = []
        self.removes: list[str] = []
        self._subscribers: list[asyncio.Queue[str]] = []

    async def describe(self) -> NodeDescription:
        return NodeDescription(
            hostname="fake-host",
            os="linux",
            arch="x86_64",
            nano_cpus=2_000_000_000,
            memory_bytes=4 * 1024**3,
            engine_version="fake-1",
            engine_labels={"fake": "yes"},
        )

    async def ensure(self, task: Task) -> Observed:
        unit = self.units.get(task.id)
        if unit is not None and unit.state is TaskState.STARTING:  # created, never started
            unit = self.units[task.id] = dataclasses.replace(
                unit, state=TaskState.RUNNING, started_at=time.time()
            )
            self._publish(task.id)
        if unit is not None:
            return unit
        if task.spec.image == REJECTED_IMAGE:
            raise TaskRejected(f"image {REJECTED_IMAGE} is not on this node")
        unit = Observed(
            task_id=task.id,
            state=TaskState.RUNNING,
            container_id=f"c{next(_ids):06d}",
            cluster_id=self.cluster_id,
            service=task.service,
            started_at=time.time(),
        )
        self.units[task.id] = unit
        self.starts.append(task.id)
        self._publish(task.id)
        return unit

    async def stop(self, task_id: str, *, grace: float) -> Observed | None:
        self.stops.append(task_id)
        unit = self.units.get(task_id)
        if unit is None or unit.state is not TaskState.RUNNING:
            return unit
        return self.exit_unit(task_id, 143)

    async def remove(self, task_id: str) -> None:
        self.removes.append(task_id)
        if self.units.pop(task_id, None) is not None:
            self._publish(task_id)

    async def observe(self) -> list[Observed]:
        return list(self.units.values())

    async def changes(self) -> AsyncIterator[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.remove(queue)

    # --- for tests -----------------------------------------------------------------------
    def exit_unit(self, task_id: str, code: int) -> Observed:
        unit = self.units[task_id]
        ended = Observed(
            task_id=task_id,
            state=TaskState.COMPLETE if code == 0 else TaskState.FAILED,
            container_id=unit.container_id,
            cluster_id=unit.cluster_id,
            service=unit.service,
            exit_code=code,
            started_at=unit.started_at,
            finished_at=time.time(),
        )
        self.units[task_id] = ended
        self._publish(task_id)
        return ended

    def add_unit(
        self, task_id: str, *, cluster_id: str, state: TaskState = TaskState.RUNNING
    ) -> None:
        """A unit this agent did not start (a leftover, another cluster's, a half-made one)."""
        self.units[task_id] = Observed(
            task_id=task_id,
            state=state,
            container_id=f"c{next(_ids):06d}",
            cluster_id=cluster_id,
        )

    def vanish(self, task_id: str) -> None:
        """The unit disappears behind the agent's back (someone ran `docker rm -f`)."""
        del self.units[task_id]
        self._publish(task_id)

    def _publish(self, task_id: str) -> None:
        for queue in self._subscribers:
            queue.put_nowait(task_id)


class FlakyStore(Store):
    """A store that a test can take down and bring back."""

    scheme = "flaky"

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.min_lease_ttl = inner.min_lease_ttl
        self.lease_expiry_slack = inner.lease_expiry_slack
        self.down = False
        self.compact_next_watch = False
        self._up = asyncio.Event()
        self._up.set()
        self._broken = asyncio.Event()

    @classmethod
    async def open(cls, url: str) -> Self:
        return cls(await open_store(url))

    def go_down(self) -> None:
        self.down = True
        self._up.clear()

    def come_back(self) -> None:
        self.down = False
        self._up.set()

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("flaky store is down (test)")

    async def get(self, key: str) -> KeyValue | None:
        self._check()
        return await self.inner.get(key)

    async def list(self, prefix: str) -> Listing:
        self._check()
        return await self.inner.list(prefix)

    async def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        self._check()
        return await self.inner.put(key, value, lease=lease)

    async def delete(self, key: str) -> bool:
        self._check()
        return await self.inner.delete(key)

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        self._check()
        return await self.inner.txn(compares, ops)

    async def grant(self, ttl: float) -> Lease:
        self._check()
        return await self.inner.grant(ttl)

    async def keep_alive(self, lease: int) -> None:
        self._check()
        await self.inner.keep_alive(lease)

    async def revoke(self, lease: int) -> None:
        self._check()
        await self.inner.revoke(lease)

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[Event]:
        self._check()
        if self.compact_next_watch:
            self.compact_next_watch = False
            raise RevisionCompacted(start_revision, start_revision + 1)
        broken = self._broken
        inner = aiter(self.inner.watch(prefix, start_revision=start_revision))
        following: asyncio.Future[Event] | None = None
        try:
            while True:
                following = asyncio.ensure_future(anext(inner))
                breaking = asyncio.ensure_future(broken.wait())
                try:
                    await asyncio.wait({following, breaking}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    breaking.cancel()
                if broken.is_set():  # undelivered events come again from a new watch
                    raise StoreUnavailable("flaky store broke its watches (test)")
                event = following.result()
                await self._up.wait()  # a store that is down delivers nothing
                yield event
        finally:
            if following is not None and not following.done():
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following
            await inner.aclose()  # type: ignore[attr-defined]

    def break_watches(self) -> None:
        """Every open watch raises `StoreUnavailable`, as when a connection drops."""
        self._broken.set()
        self._broken = asyncio.Event()

    async def close(self) -> None:
        await self.inner.close()


CLI = [sys.executable, "-c", "from controlplane.cli import main; main()", "agent"]


class AgentProcess:
    """One `shoal agent` process with its log; stopped (SIGKILL) at the end if still up."""

    def __init__(self, args: list[str], *, log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*CLI, *args], stdout=out, stderr=out, stdin=subprocess.DEVNULL
            )

    async def exited(self, *, within: float = 20.0) -> int:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.02)
        pytest.fail(f"shoal agent still running after {within} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    spawner = Spawner(tmp_path)
    try:
        yield spawner
    finally:
        for agent in spawner.started:
            agent.kill()


class Spawner:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[AgentProcess] = []

    def __call__(self, *args: str, name: str = "agent") -> AgentProcess:
        agent = AgentProcess(list(args), log=self.tmp_path / f"{name}.log")
        self.started.append(agent)
        return agent


async def registered(store: Store, state_dir: Path, agent: AgentProcess) -> NodeInfo:
    """The node's heartbeat document, once the agent in `state_dir` has registered."""

    async def check() -> NodeInfo | None:
        if agent.proc.poll() is not None:
            pytest.fail(f"shoal agent exited with {agent.proc.returncode}:\n{agent.output()}")
        identity = load_identity(state_dir)
        if identity is None:
            return None
        kv = await store.get(keys.node(identity.node_id))
        return NodeInfo.load(kv.value) if kv is not None else None

    info: NodeInfo = await eventually(check, within=30.0, what="node registered")
    return info


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 5.0, what: str = "condition"
) -> Any:
    """Poll `check` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.02)
    pytest.fail(f"{what} not reached within {within} s (last: {last!r})")


def make_task(node_id: str, *, task_id: str | None = None, image: str = "busybox:test") -> Task:
    task_id = task_id or f"t-{uuid.uuid4().hex[:8]}"
    return Task(
        id=task_id,
        service="web",
        slot=1,
        node_id=node_id,
        spec_version=1,
        spec=TaskSpec(image=image, stop_grace_seconds=1.0),
        created=time.time(),
    )


async def put_task(store: Store, task: Task) -> None:
    await store.put(keys.task(task.node_id, task.id), task.dump())


async def set_desired(store: Store, task: Task, desired: DesiredState) -> None:
    await put_task(store, task.model_copy(update={"desired_state": desired}))


async def status_of(store: Store, task_id: str) -> TaskStatus | None:
    kv = await store.get(keys.status(task_id))
    return TaskStatus.load(kv.value) if kv is not None else None


async def state_is(store: Store, task_id: str, state: TaskState) -> TaskStatus | None:
    status = await status_of(store, task_id)
    return status if status is not None and status.state is state else None


async def write_cluster(store: Store, cluster_id: str = CLUSTER_ID) -> None:
    record = ClusterRecord(
        id=cluster_id,
        created=time.time(),
        worker_token_hash="x",
        manager_token_hash="x",
        api_token_hash="x",
    )
    await store.put(keys.CLUSTER, record.dump())


class AgentRunner:
    """Runs in-process agents on one store and stops them all at the end of a test."""

    def __init__(self, store: Store, tmp_path: Path) -> None:
        self.store = store
        self.tmp_path = tmp_path
        self._running: list[tuple[Agent, asyncio.Task[None]]] = []

    def agent(
        self,
        runtime: Runtime | RuntimeFactory,
        *,
        state_dir: Path | None = None,
        period: float = 0.2,
        resync: float = 0.5,
        labels: dict[str, str] | None = None,
        addr: str = "127.0.0.2",
    ) -> Agent:
        return Agent(
            runtime=runtime,
            state_dir=state_dir or self.tmp_path / "agent",
            advertise_addr=addr,
            store=self.store,
            labels=labels,
            heartbeat_period=period,
            resync_interval=resync,
        )

    async def start(self, agent: Agent) -> Agent:
        """Run `agent` in the background; return once it is registered and synced."""
        task = asyncio.create_task(agent.run())
        self._running.append((agent, task))

        async def ready() -> bool:
            if task.done():
                task.result()  # raise what it raised
            return agent.executor is not None and agent.executor.ready.is_set()

        await eventually(ready, within=10.0, what="agent ready")
        return agent

    async def stop(self, agent: Agent) -> None:
        await agent.stop()
        for running, task in self._running:
            if running is agent:
                async with asyncio.timeout(5.0):
                    await task

    async def close(self) -> None:
        for agent, task in self._running:
            await agent.stop()
            async with asyncio.timeout(5.0):
                await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def agent_store(memory_url: str) -> AsyncIterator[FlakyStore]:
    opened = FlakyStore(await open_store(memory_url))
    await write_cluster(opened)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def agents(agent_store: FlakyStore, tmp_path: Path) -> AsyncIterator[AgentRunner]:
    running = AgentRunner(agent_store, tmp_path)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
def fake_runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def cluster_id(docker_client: Any) -> Iterator[str]:
    """A cluster id of the test's own, for tests on real Docker: the containers labelled
    with it are removed afterwards."""
    cluster = f"agent-test-{uuid.uuid4().hex[:10]}"
    yield cluster
    for container in docker_client.containers.list(
        all=True, filters={"label": f"{LABEL_CLUSTER}={cluster}"}
    ):
        container.remove(force=True)


def docker_runtime(host: str) -> RuntimeFactory:
    """A runtime factory for `AgentRunner`: the Docker runtime on the engine at `host`."""

    def build(identity: Identity) -> Runtime:
        return DockerRuntime(
            cluster_id=identity.cluster_id,
            node_id=identity.node_id,
            advertise_addr="127.0.0.1",
            docker_host=host,
        )

    return build
