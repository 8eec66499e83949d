"""The mirror's per-service task counts and list versions stay true to its tasks and statuses.

`service ls` and `GET /services/<name>` read the counts instead of walking the tasks, and
`GET /tasks` keeps ready lists while the version is unchanged: a count or a version that
misses one kind of change is a service shown running what it is not, or a stale list.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from controlplane import keys
from controlplane.models import Task, TaskSpec, TaskState, TaskStatus
from controlplane.models.task import DesiredState
from controlplane.state import ClusterMirror
from discovery import Delete, Op, Put, Store, open_store
from discovery.backends import memory


@pytest.fixture
async def store(memory_url: str) -> AsyncIterator[Store]:
    opened = await open_store(memory_url)
    yield opened
    await opened.close()


@pytest.fixture
async def mirror(store: Store) -> AsyncIterator[ClusterMirror]:
    async with ClusterMirror(store, retry_delay=0.01) as started:
        yield started


def task(task_id: str, service: str, *, node_id: str = "n1", desired: DesiredState) -> bytes:
    return Task(
        id=task_id,
        service=service,
        slot=1,
        node_id=node_id,
        spec_version=1,
        spec=TaskSpec(image="nginx"),
        desired_state=desired,
    ).dump()


def status(task_id: str, state: TaskState) -> bytes:
    return TaskStatus(task_id=task_id, state=state).dump()


async def settle(store: Store, mirror: ClusterMirror) -> None:
    """Wait until the mirror holds everything written so far (a write of its own: a
    transaction that deleted only missing keys has no event to wait for)."""
    revision = await store.put("settle-marker", b"")
    assert await mirror.wait_for_revision(revision, timeout=2)


def walked(mirror: ClusterMirror, service: str) -> tuple[int, int]:
    """The counts as a walk over every task finds them."""
    live = [
        t
        for t in mirror.tasks.values()
        if t.service == service and t.desired_state is DesiredState.RUNNING
    ]
    statuses = mirror.statuses
    running = sum(1 for t in live if t.id in statuses and statuses[t.id].state is TaskState.RUNNING)
    return len(live), running


async def test_counts_follow_every_kind_of_change(store: Store, mirror: ClusterMirror) -> None:
    """Random puts and deletes of tasks (placed and pending, either desired state) and of
    statuses (before their task, too), some in one transaction: after each step the counts
    equal a walk over the tasks."""
    rng = random.Random(5)
    services = ["web", "db"]
    ids = [f"t{index}" for index in range(12)]
    where: dict[str, str] = {}  # task id -> its key, while it exists
    for _ in range(150):
        ops: list[Op] = []
        for _ in range(rng.choice([1, 1, 3])):
            task_id = rng.choice(ids)
            kind = rng.random()
            if kind < 0.4:
                placed = rng.random() < 0.8
                key = keys.task("n1", task_id) if placed else keys.pending(task_id)
                if task_id in where and where[task_id] != key:
                    ops.append(Delete(where[task_id]))
                desired = rng.choice(list(DesiredState))
                value = task(
                    task_id,
                    services[int(task_id[1:]) % 2],
                    node_id="n1" if placed else "",
                    desired=desired,
                )
                ops.append(Put(key, value))
                where[task_id] = key
            elif kind < 0.5 and task_id in where:
                ops.append(Delete(where.pop(task_id)))
            elif kind < 0.9:
                ops.append(Put(keys.status(task_id), status(task_id, rng.choice(list(TaskState)))))
            else:
                ops.append(Delete(keys.status(task_id)))
        # one transaction may not touch a key twice: keep the last op of each key
        last = {op.key: op for op in ops}
        await store.txn([], list(last.values()))
        await settle(store, mirror)
        for name in services:
            assert mirror.task_counts(name) == walked(mirror, name)


async def test_counts_of_a_service_without_tasks_are_zero(mirror: ClusterMirror) -> None:
    assert mirror.task_counts("nothing") == (0, 0)


async def test_tasks_version_moves_with_its_service_only(
    store: Store, mirror: ClusterMirror
) -> None:
    await store.put(keys.task("n1", "w1"), task("w1", "web", desired=DesiredState.RUNNING))
    await store.put(keys.task("n1", "d1"), task("d1", "db", desired=DesiredState.RUNNING))
    await settle(store, mirror)
    web, db, every = (mirror.tasks_version(s) for s in ("web", "db", None))

    await store.put(keys.status("w1"), status("w1", TaskState.RUNNING))
    await settle(store, mirror)
    assert mirror.tasks_version("web") != web
    assert mirror.tasks_version(None) != every
    assert mirror.tasks_version("db") == db

    for change in (
        lambda: store.put(keys.status("d1"), status("d1", TaskState.FAILED)),
        lambda: store.delete(keys.status("d1")),
        lambda: store.put(keys.task("n1", "d1"), task("d1", "db", desired=DesiredState.SHUTDOWN)),
        lambda: store.delete(keys.task("n1", "d1")),
        lambda: store.put(
            keys.pending("d2"), task("d2", "db", node_id="", desired=DesiredState.RUNNING)
        ),
    ):
        before = mirror.tasks_version("db")
        await change()
        await settle(store, mirror)
        assert mirror.tasks_version("db") != before


async def test_counts_and_versions_after_a_relist(
    store: Store, mirror: ClusterMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task removed while the mirror could not follow (compacted history): the relisted
    counts no longer hold it, and the version is not one a list built before could carry."""
    await store.put(keys.task("n1", "w1"), task("w1", "web", desired=DesiredState.RUNNING))
    await store.put(keys.status("w1"), status("w1", TaskState.RUNNING))
    await settle(store, mirror)
    assert mirror.task_counts("web") == (1, 1)
    before = mirror.tasks_version("web")
    monkeypatch.setattr(memory, "HISTORY", 2)
    await store.delete(keys.task("n1", "w1"))
    for index in range(10):
        await store.put(keys.node_spec(f"n{index}"), b"{}")
    await settle(store, mirror)
    assert mirror.listings == 2
    assert mirror.task_counts("web") == (0, 0)
    assert mirror.tasks_version("web") != before
