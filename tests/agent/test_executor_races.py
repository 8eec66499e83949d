"""The executor against a runtime whose listings and starts a test holds and releases.

What users care about: a task that was just started is never reported failed because a
listing of the runtime, taken before its unit existed, arrived late; and a slow store
does not hold its start up. Each test forces one interleaving of the task's worker
(queued reports, then `ensure`) with a listing (`observe`, from a resync or a change
notification) or with a held status write, on the fake, hollow and process runtimes; no
timing decides the order. A unit that really disappears is still reported failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from controlplane import keys
from controlplane.agent.executor import CHANGE_BATCH_WINDOW, Executor
from controlplane.agent.runtime import NodeDescription, Observed, Runtime
from controlplane.agent.runtime.hollow import HollowRuntime
from controlplane.agent.runtime.process import ProcessRuntime
from controlplane.agent.status import StatusBatcher, StatusReporter
from controlplane.models import Task, TaskSpec, TaskStatus
from controlplane.models.task import TaskState
from discovery import Compare, Event, EventType, Op, Store, TxnResult
from tests.agent.conftest import CLUSTER_ID, FakeRuntime, FlakyStore, eventually, make_task

NODE = "n-races"


class GatedRuntime(Runtime):
    """Another runtime, whose listings and starts a test can hold.

    A listing is what the engine had when it was asked (as a container list is); while
    `answer` is clear it is held before being returned. While `start` is clear, `ensure`
    waits before it makes the unit.
    """

    name = "gated"

    def __init__(self, inner: Runtime) -> None:
        self.inner = inner
        self.answer = asyncio.Event()
        self.answer.set()
        self.start = asyncio.Event()
        self.start.set()
        self.asked = 0  # listings asked for so far
        self.answered = 0
        self.ensuring: set[str] = set()  # tasks whose ensure has begun and not returned
        self.hide_once: set[str] = set()  # leave these out of the next listing (a hiccup)

    async def describe(self) -> NodeDescription:
        return await self.inner.describe()

    async def ensure(self, task: Task) -> Observed:
        self.ensuring.add(task.id)
        try:
            await self.start.wait()
            return await self.inner.ensure(task)
        finally:
            self.ensuring.discard(task.id)

    async def stop(self, task_id: str, *, grace: float) -> Observed | None:
        return await self.inner.stop(task_id, grace=grace)

    async def remove(self, task_id: str) -> None:
        await self.inner.remove(task_id)

    async def observe(self) -> list[Observed]:
        listed = await self.inner.observe()
        hidden, self.hide_once = self.hide_once, set()
        listed = [unit for unit in listed if unit.task_id not in hidden]
        self.asked += 1
        await self.answer.wait()
        self.answered += 1
        return listed

    def changes(self) -> AsyncIterator[str]:
        return self.inner.changes()

    async def close(self) -> None:
        await self.inner.close()


class RecordingReporter(StatusReporter):
    """Records every status, writes none."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.statuses: list[TaskStatus] = []

    async def report(self, status: TaskStatus) -> None:
        self.statuses.append(status)

    def report_soon(self, status: TaskStatus) -> None:
        self.statuses.append(status)

    async def forget(self, task_id: str) -> None:
        return None

    def states(self, task_id: str) -> list[TaskState]:
        return [s.state for s in self.statuses if s.task_id == task_id]


class HeldStatusWrites(FlakyStore):
    """The agent's store, whose status writes wait while `gate` is clear (a slow store)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.gate = asyncio.Event()
        self.waiting = 0  # status transactions waiting at the gate now

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        if any(op.key.startswith(keys.STATUS) for op in ops):
            self.waiting += 1
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
        return await super().txn(compares, ops)


Started = tuple[GatedRuntime, RecordingReporter, Executor]


def fake(tmp_path: Path) -> Runtime:
    return FakeRuntime()


def hollow(tmp_path: Path) -> Runtime:
    return HollowRuntime(node_id=NODE, nano_cpus=10**9, memory_bytes=2**30, cluster_id=CLUSTER_ID)


def process(tmp_path: Path) -> Runtime:
    return ProcessRuntime(cluster_id=CLUSTER_ID, node_id=NODE, state_dir=tmp_path / "state")


RUNTIMES: dict[str, Callable[[Path], Runtime]] = {
    "fake": fake,
    "hollow": hollow,
    "process": process,
}


def task_for(runtime: str) -> Task:
    task = make_task(NODE)
    if runtime == "process":
        spec = TaskSpec(image="", command=["sleep", "60"], stop_grace_seconds=1.0)
        task = task.model_copy(update={"spec": spec})
    return task


@pytest.fixture(params=sorted(RUNTIMES))
def runtime_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def started(
    agent_store: FlakyStore, tmp_path: Path, runtime_name: str
) -> AsyncIterator[tuple[GatedRuntime, RecordingReporter, Executor]]:
    runtime = GatedRuntime(RUNTIMES[runtime_name](tmp_path))
    reporter = RecordingReporter(agent_store)
    executor = Executor(
        agent_store,
        runtime,
        node_id=NODE,
        cluster_id=CLUSTER_ID,
        reporter=reporter,
        resync_interval=3600.0,  # listings come only when a test asks for them
    )
    running = asyncio.create_task(executor.run())
    await eventually(lambda: _ready(executor, running), what="executor ready")
    try:
        yield runtime, reporter, executor
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        for unit in await runtime.inner.observe():
            await runtime.inner.remove(unit.task_id)
        await runtime.close()


async def _ready(executor: Executor, running: asyncio.Task[None]) -> bool:
    if running.done():
        running.result()
    return executor.ready.is_set()


async def put(store: Store, task: Task) -> None:
    await store.put(keys.task(NODE, task.id), task.dump())


async def resync(executor: Executor) -> None:
    """One listing of the runtime as the periodic resync makes it (the timer's job)."""
    await executor._resync()


async def settled(reporter: RecordingReporter, task: Task) -> None:
    """Once the task has reported running, and the listing its start announced is in."""
    await eventually(
        lambda: _reported(reporter, task, TaskState.RUNNING), what=f"{task.id} running"
    )
    await asyncio.sleep(10 * CHANGE_BATCH_WINDOW)


async def _reported(reporter: RecordingReporter, task: Task, state: TaskState) -> bool:
    return state in reporter.states(task.id)


async def test_a_slow_status_write_holds_up_neither_the_start_nor_a_listing(
    agent_store: FlakyStore, tmp_path: Path, runtime_name: str
) -> None:
    """`preparing` and `starting` are queued, not waited for: the unit starts while the
    store still holds those writes, a listing taken meanwhile finds the unit (nothing is
    reported lost), and once the store answers the statuses land in order and end at
    running. (Until this session the worker awaited `starting`, and a listing delivered
    during that wait was the CI failure "its unit disappeared".)"""
    store = HeldStatusWrites(agent_store)
    runtime = RUNTIMES[runtime_name](tmp_path)
    executor = Executor(
        store,
        runtime,
        node_id=NODE,
        cluster_id=CLUSTER_ID,
        reporter=StatusReporter(store, batcher=StatusBatcher(store)),
        resync_interval=3600.0,
    )
    running = asyncio.create_task(executor.run())
    try:
        await eventually(lambda: _ready(executor, running), what="executor ready")
        task = task_for(runtime_name)
        start = (await agent_store.list(keys.STATUS)).revision + 1
        await put(agent_store, task)

        await eventually(lambda: _listed(runtime, task), what="the unit started")
        assert store.waiting >= 1  # its first status write is still held
        assert await agent_store.get(keys.status(task.id)) is None
        await resync(executor)
        await resync(executor)
        store.gate.set()

        await eventually(
            lambda: _landed(agent_store, task, TaskState.RUNNING), what="running written"
        )
        await asyncio.sleep(10 * CHANGE_BATCH_WINDOW)
        written = [
            TaskStatus.load(event.value).state
            for event in await _events(agent_store, keys.status(task.id), start)
        ]
        assert written[-1] is TaskState.RUNNING, written
        assert written == sorted(written, key=list(TaskState).index), written  # in order
        assert [u.task_id for u in await runtime.observe()] == [task.id]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        for unit in await runtime.observe():
            await runtime.remove(unit.task_id)
        await runtime.close()


async def _listed(runtime: Runtime, task: Task) -> bool:
    return any(unit.task_id == task.id for unit in await runtime.observe())


async def _landed(store: Store, task: Task, state: TaskState) -> bool:
    found = await store.get(keys.status(task.id))
    return found is not None and TaskStatus.load(found.value).state is state


async def _events(store: Store, key: str, start: int) -> list[Event]:
    """The puts of `key` from revision `start` to now."""
    now = (await store.list(key)).revision
    seen: list[Event] = []
    if now < start:
        return seen
    async with asyncio.timeout(5.0):
        async for event in store.watch(key, start_revision=start):
            if event.key == key and event.type is EventType.PUT:
                seen.append(event)
            if event.revision >= now:
                break
    return seen


async def test_a_listing_asked_while_the_unit_is_being_started_is_dropped(
    agent_store: FlakyStore, started: Started, runtime_name: str
) -> None:
    runtime, reporter, executor = started
    task = task_for(runtime_name)
    runtime.start.clear()
    await put(agent_store, task)
    await eventually(lambda: _ensuring(runtime, task), what="ensure begun")

    for answered_while_busy in (True, False):
        runtime.answer.clear()
        listing = asyncio.create_task(resync(executor))
        await eventually(lambda: _asked(runtime, 1), what="the listing asked")
        if answered_while_busy:
            runtime.answer.set()
            await listing
        else:
            runtime.start.set()
            await settled(reporter, task)
            runtime.answer.set()
            await listing
    await resync(executor)
    states = reporter.states(task.id)
    assert states == [TaskState.STARTING, TaskState.RUNNING], states


async def test_a_listing_asked_before_the_task_arrived_is_no_loss(
    agent_store: FlakyStore, started: Started, runtime_name: str
) -> None:
    runtime, reporter, executor = started
    task = task_for(runtime_name)
    runtime.answer.clear()
    listing = asyncio.create_task(resync(executor))
    await eventually(lambda: _asked(runtime, 1), what="the listing asked")
    await put(agent_store, task)
    await settled(reporter, task)
    runtime.answer.set()
    await listing
    await resync(executor)
    states = reporter.states(task.id)
    assert states == [TaskState.STARTING, TaskState.RUNNING], states


async def test_a_unit_missing_from_one_listing_only_is_not_reported_failed(
    agent_store: FlakyStore, started: Started, runtime_name: str
) -> None:
    """An engine's list that leaves a running unit out once (a hiccup) costs one more
    listing, not the task."""
    runtime, reporter, executor = started
    task = task_for(runtime_name)
    await put(agent_store, task)
    await settled(reporter, task)
    runtime.hide_once.add(task.id)
    await resync(executor)
    await asyncio.sleep(0.2)  # the worker takes it in (and may look again)
    await resync(executor)
    await asyncio.sleep(0.2)
    states = reporter.states(task.id)
    assert states == [TaskState.STARTING, TaskState.RUNNING], states


async def test_a_unit_that_really_disappears_is_still_reported_failed(
    agent_store: FlakyStore, started: Started, runtime_name: str
) -> None:
    runtime, reporter, executor = started
    task = task_for(runtime_name)
    await put(agent_store, task)
    await settled(reporter, task)
    await runtime.inner.remove(task.id)  # behind the agent's back (`docker rm -f`)
    await resync(executor)

    failed = await eventually(
        lambda: _last(reporter, task, TaskState.FAILED), what="reported failed"
    )
    assert "disappeared" in failed.message
    assert failed.error == "unit not found"


async def _last(reporter: RecordingReporter, task: Task, state: TaskState) -> TaskStatus | None:
    mine = [s for s in reporter.statuses if s.task_id == task.id]
    return mine[-1] if mine and mine[-1].state is state else None


async def _asked(runtime: GatedRuntime, count: int) -> bool:
    return runtime.asked - runtime.answered >= count


async def _ensuring(runtime: GatedRuntime, task: Task) -> bool:
    return task.id in runtime.ensuring
