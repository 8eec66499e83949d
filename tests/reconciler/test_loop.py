"""The reconcile loop end to end: memory store, mirror, reconciler, a simulated agent."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from typing import Any

import pytest

from controlplane import keys
from controlplane.models import (
    LeaderRecord,
    NodeInfo,
    NodeSpec,
    ServiceSpec,
    TaskState,
    TaskStatus,
)
from controlplane.models.service import ServiceRecord
from controlplane.models.task import DesiredState
from controlplane.reconciler import NotLeader, Plan, Reconciler, ReconcilerConfig, plan
from controlplane.state import ClusterMirror, ClusterSnapshot
from discovery import Store, open_store

LEADER = LeaderRecord(manager_id="m1", api_url="http://m1", term_started=0.0)
CONFIG = ReconcilerConfig(debounce=0.01, retry_delay=0.05, node_grace=5.0)


@pytest.fixture
async def store(memory_url: str) -> AsyncIterator[Store]:
    opened = await open_store(memory_url)
    for node_id in ("n1", "n2", "n3"):
        await opened.put(keys.node_spec(node_id), NodeSpec(id=node_id).dump())
        info = NodeInfo(id=node_id, hostname=node_id, addr="10.0.0.1", memory_bytes=1 << 33)
        await opened.put(keys.node(node_id), info.dump())
    yield opened
    await opened.close()


@pytest.fixture
async def mirror(store: Store) -> AsyncIterator[ClusterMirror]:
    async with ClusterMirror(store) as started:
        yield started


async def deploy(store: Store, **spec: Any) -> None:
    record = ServiceRecord(id="svc-web", spec=ServiceSpec(name="web", image="nginx", **spec))
    await store.put(keys.service("web"), record.dump())


async def simulated_agent(
    store: Store, mirror: ClusterMirror, *, fail: Callable[[str], bool] = lambda _: False
) -> None:
    """Every node's agent at once: start what is assigned, stop what should stop."""
    while True:
        seen = mirror.revision
        for task in list(mirror.tasks.values()):
            status = mirror.statuses.get(task.id)
            if not task.node_id or status is None or status.state.terminal:
                continue
            if task.desired_state is DesiredState.SHUTDOWN:
                state = TaskState.SHUTDOWN
            elif status.state is TaskState.ASSIGNED:
                state = TaskState.FAILED if fail(task.id) else TaskState.RUNNING
            else:
                continue
            now = time.time()
            report = TaskStatus(
                task_id=task.id, state=state, timestamp=now, started_at=now, finished_at=now
            )
            await store.put(keys.status(task.id), report.dump())
        await mirror.wait_changed(seen)


async def until(condition: Callable[[], bool], mirror: ClusterMirror, *, within: float) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await mirror.wait_changed()


def running(mirror: ClusterMirror) -> list[str]:
    return [
        task.node_id
        for task in mirror.tasks.values()
        if task.desired_state is DesiredState.RUNNING
        and (status := mirror.statuses.get(task.id)) is not None
        and status.state is TaskState.RUNNING
    ]


@contextlib.asynccontextmanager
async def background(
    *coroutines: Coroutine[Any, Any, None],
) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_converges_ten_replicas_onto_three_nodes(store: Store, mirror: ClusterMirror) -> None:
    await deploy(store, replicas=10)
    token = await store.put(keys.LEADER, LEADER.dump())
    latencies: list[float] = []
    reconciler = Reconciler(
        store, mirror, fencing_token=token, config=CONFIG, on_pass=latencies.append
    )
    async with background(reconciler.run(), simulated_agent(store, mirror)) as (run, _):
        await until(lambda: len(running(mirror)) == 10, mirror, within=10)
        assert sorted(Counter(running(mirror)).values()) == [3, 3, 4]
        assert sorted(task.slot or 0 for task in mirror.tasks.values()) == list(range(1, 11))
        await asyncio.sleep(0.1)
        assert len(mirror.tasks) == 10  # settled: nothing more was created
        await reconciler.stop()
        await asyncio.wait_for(run, 1)
    metrics = reconciler.metrics
    assert metrics.passes >= 2
    assert metrics.ops_applied == 10
    assert metrics.conflicts == 0
    assert metrics.total_pass_seconds >= metrics.last_pass_seconds >= 0
    assert len(latencies) == metrics.passes


async def test_a_restart_delay_wakes_the_loop_without_store_changes(
    store: Store, mirror: ClusterMirror
) -> None:
    await deploy(store, replicas=1, restart_policy={"delay": 0.3})
    token = await store.put(keys.LEADER, LEADER.dump())
    reconciler = Reconciler(store, mirror, fencing_token=token, config=CONFIG)
    failing: set[str] = set()

    def fail_first(task_id: str) -> bool:
        if not failing:
            failing.add(task_id)
            return True
        return False

    async with background(reconciler.run(), simulated_agent(store, mirror, fail=fail_first)):
        await until(lambda: len(running(mirror)) == 1, mirror, within=5)
        assert len(mirror.tasks) == 2
        (first,) = failing
        failed = mirror.statuses[first]
        restarted = max(mirror.tasks.values(), key=lambda task: task.created)
        assert restarted.created - (failed.finished_at or 0) >= 0.3
        await reconciler.stop()


async def test_a_new_term_fences_the_old_leader_off(store: Store, mirror: ClusterMirror) -> None:
    await deploy(store, replicas=2)
    token = await store.put(keys.LEADER, LEADER.dump())
    reconciler = Reconciler(store, mirror, fencing_token=token, config=CONFIG)
    async with background(reconciler.run(), simulated_agent(store, mirror)) as (run, _):
        await until(lambda: len(running(mirror)) == 2, mirror, within=5)
        await store.put(keys.LEADER, LEADER.dump())  # another manager leads now
        await deploy(store, replicas=5)
        with pytest.raises(NotLeader):
            await asyncio.wait_for(run, 5)
    assert len(mirror.tasks) == 2


async def test_a_failing_pass_is_retried(store: Store, mirror: ClusterMirror) -> None:
    await deploy(store, replicas=1)
    token = await store.put(keys.LEADER, LEADER.dump())
    calls = 0

    def flaky(
        snapshot: ClusterSnapshot,
        *,
        now: float,
        config: ReconcilerConfig,
        services: Collection[str] | None = None,
    ) -> Plan:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return plan(snapshot, now=now, config=config, services=services)

    reconciler = Reconciler(store, mirror, fencing_token=token, config=CONFIG, planner=flaky)
    async with background(reconciler.run(), simulated_agent(store, mirror)):
        await until(lambda: len(running(mirror)) == 1, mirror, within=5)
        await reconciler.stop()
    assert reconciler.metrics.failed_passes == 1


async def test_stop_returns_promptly_when_idle(store: Store, mirror: ClusterMirror) -> None:
    token = await store.put(keys.LEADER, LEADER.dump())
    reconciler = Reconciler(store, mirror, fencing_token=token, config=CONFIG)
    run = asyncio.create_task(reconciler.run())
    await asyncio.sleep(0.05)
    await asyncio.wait_for(reconciler.stop(), 1)
    await asyncio.wait_for(run, 1)


async def test_after_the_first_pass_only_changed_services_are_planned(
    store: Store, mirror: ClusterMirror
) -> None:
    await deploy(store, replicas=2)
    other = ServiceRecord(id="svc-db", spec=ServiceSpec(name="db", image="pg", replicas=1))
    await store.put(keys.service("db"), other.dump())
    token = await store.put(keys.LEADER, LEADER.dump())
    scopes: list[frozenset[str] | None] = []

    def recording(
        snapshot: ClusterSnapshot,
        *,
        now: float,
        config: ReconcilerConfig,
        services: Collection[str] | None = None,
    ) -> Plan:
        scopes.append(None if services is None else frozenset(services))
        return plan(snapshot, now=now, config=config, services=services)

    reconciler = Reconciler(store, mirror, fencing_token=token, config=CONFIG, planner=recording)
    async with background(reconciler.run(), simulated_agent(store, mirror)):
        await until(lambda: len(running(mirror)) == 3, mirror, within=5)
        async with asyncio.timeout(5):  # the passes that saw the last reports are done
            while reconciler.metrics.last_revision < mirror.revision:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        settled = len(scopes)
        await store.put(
            keys.service("web"),
            ServiceRecord(
                id="svc-web", spec=ServiceSpec(name="web", image="nginx", replicas=3)
            ).dump(),
        )
        await until(lambda: len(running(mirror)) == 4, mirror, within=5)
        await reconciler.stop()
    assert scopes[0] is None  # the first pass plans everything
    assert reconciler.metrics.full_passes == 1
    later = scopes[settled:]
    assert later
    assert all(scope == {"web"} for scope in later)


async def test_a_pending_task_is_placed_when_another_service_frees_room(
    store: Store, mirror: ClusterMirror
) -> None:
    gib = 1 << 30
    hog = ServiceSpec(name="hog", image="x", replicas=3, reservations={"memory_bytes": 8 * gib})
    await store.put(keys.service("hog"), ServiceRecord(id="svc-hog", spec=hog).dump())
    token = await store.put(keys.LEADER, LEADER.dump())
    reconciler = Reconciler(store, mirror, fencing_token=token, config=CONFIG)
    async with background(reconciler.run(), simulated_agent(store, mirror)):
        await until(lambda: len(running(mirror)) == 3, mirror, within=5)
        await deploy(store, replicas=1, reservations={"memory_bytes": gib})
        await until(lambda: len(mirror.pending) == 1, mirror, within=5)
        smaller = hog.model_copy(update={"replicas": 2})
        record = ServiceRecord(id="svc-hog", spec=smaller, spec_version=2)
        await store.put(keys.service("hog"), record.dump())
        # only hog changed; web's pending task is placed on the room its stop freed
        await until(lambda: not mirror.pending and len(running(mirror)) == 3, mirror, within=5)
        await reconciler.stop()
    assert reconciler.metrics.full_passes == 1
