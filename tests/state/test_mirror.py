"""The cluster mirror follows the store: puts, deletes, bad values, compaction, down nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from controlplane import keys
from controlplane.models import (
    LeaderRecord,
    NodeInfo,
    NodeSpec,
    ServiceSpec,
    Task,
    TaskSpec,
    TaskState,
    TaskStatus,
)
from controlplane.models.service import ServiceRecord
from controlplane.state import ClusterMirror
from discovery import Delete, Put, Store, open_store
from discovery.backends import memory


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(memory_url: str) -> AsyncIterator[Store]:
    opened = await open_store(memory_url)
    yield opened
    await opened.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def mirror(store: Store, clock: FakeClock) -> AsyncIterator[ClusterMirror]:
    async with ClusterMirror(store, clock=clock, retry_delay=0.01) as started:
        yield started


def node(node_id: str) -> bytes:
    return NodeInfo(id=node_id, hostname=node_id, addr="10.0.0.1").dump()


def task(task_id: str, node_id: str = "n1") -> bytes:
    spec = TaskSpec(image="nginx")
    made = Task(id=task_id, service="web", slot=1, node_id=node_id, spec_version=1, spec=spec)
    return made.dump()


def service(name: str, *, replicas: int = 1) -> bytes:
    spec = ServiceSpec(name=name, image="nginx", replicas=replicas)
    return ServiceRecord(id=f"id-{name}", spec=spec).dump()


async def settle(store: Store, mirror: ClusterMirror) -> None:
    """Wait until the mirror holds everything written so far."""
    listing = await store.list("")
    assert await mirror.wait_for_revision(listing.revision, timeout=2)


async def test_follows_puts_and_deletes(store: Store, mirror: ClusterMirror) -> None:
    await store.put(keys.node("n1"), node("n1"))
    await store.put(keys.node_spec("n1"), NodeSpec(id="n1").dump())
    await store.put(keys.service("web"), service("web", replicas=3))
    await store.put(keys.task("n1", "t1"), task("t1"))
    await store.put(keys.pending("t2"), task("t2", node_id=""))
    status = TaskStatus(task_id="t1", state=TaskState.RUNNING)
    status_revision = await store.put(keys.status("t1"), status.dump())
    leader = LeaderRecord(manager_id="m1", api_url="http://m1", term_started=1.0)
    leader_revision = await store.put(keys.LEADER, leader.dump())
    await settle(store, mirror)

    assert set(mirror.nodes) == {"n1"}
    assert mirror.node_specs["n1"].availability == "active"
    assert mirror.services["web"].spec.replicas == 3
    assert set(mirror.tasks) == {"t1", "t2"}
    assert set(mirror.pending) == {"t2"}
    assert mirror.task_entries["t1"].key == keys.task("n1", "t1")
    assert mirror.task_entries["t2"].key == keys.pending("t2")
    assert mirror.statuses["t1"].state is TaskState.RUNNING
    assert mirror.status_entries["t1"].mod_revision == status_revision
    assert mirror.leader == leader
    assert mirror.leader_revision == leader_revision

    await store.delete(keys.task("n1", "t1"))
    await store.delete(keys.status("t1"))
    await store.delete(keys.service("web"))
    await store.delete(keys.pending("t2"))
    await settle(store, mirror)
    assert not mirror.tasks
    assert not mirror.pending
    assert not mirror.statuses
    assert not mirror.services


async def test_placing_a_pending_task_moves_it_in_one_revision(
    store: Store, mirror: ClusterMirror
) -> None:
    await store.put(keys.pending("t1"), task("t1", node_id=""))
    await store.txn([], [Delete(keys.pending("t1")), Put(keys.task("n1", "t1"), task("t1"))])
    await settle(store, mirror)
    assert mirror.tasks["t1"].node_id == "n1"
    assert not mirror.pending


async def test_bad_values_are_skipped_and_keep_the_last_good_one(
    store: Store, mirror: ClusterMirror
) -> None:
    await store.put(keys.service("web"), service("web", replicas=2))
    await store.put(keys.service("web"), b"{not json")
    await store.put(keys.service("other"), b'{"version": 1}')
    await store.put(keys.task("n1", "t9"), task("t1"))  # id disagrees with its key
    await store.put("unrelated/key", b"whatever")
    await settle(store, mirror)
    assert set(mirror.services) == {"web"}
    assert mirror.services["web"].spec.replicas == 2
    assert not mirror.tasks


async def test_snapshot_does_not_move(store: Store, mirror: ClusterMirror) -> None:
    await store.put(keys.task("n1", "t1"), task("t1"))
    await settle(store, mirror)
    snapshot = mirror.snapshot()
    await store.put(keys.task("n1", "t2"), task("t2"))
    await settle(store, mirror)
    assert set(snapshot.tasks) == {"t1"}
    assert snapshot.revision < mirror.revision
    with pytest.raises(TypeError):
        snapshot.tasks["x"] = snapshot.tasks["t1"]  # type: ignore[index]


async def test_wait_changed_wakes_on_the_next_write(store: Store, mirror: ClusterMirror) -> None:
    before = mirror.revision
    written = await store.put(keys.node("n1"), node("n1"))
    assert await mirror.wait_changed(before) == written


async def test_survives_compaction(
    store: Store, mirror: ClusterMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.put(keys.node("gone"), node("gone"))
    await settle(store, mirror)
    monkeypatch.setattr(memory, "HISTORY", 2)
    # Without yielding to the mirror's watch, write more than the store keeps.
    await store.delete(keys.node("gone"))
    for index in range(20):
        await store.put(keys.task("n1", f"t{index}"), task(f"t{index}"))
    await store.delete(keys.task("n1", "t0"))
    await settle(store, mirror)
    assert mirror.listings == 2
    assert set(mirror.tasks) == {f"t{index}" for index in range(1, 20)}
    assert mirror.down_since("gone") is not None
    # and it keeps following after the relist
    await store.put(keys.task("n1", "t0"), task("t0"))
    await settle(store, mirror)
    assert "t0" in mirror.tasks


async def test_down_since(store: Store, mirror: ClusterMirror, clock: FakeClock) -> None:
    started = mirror.watching_since
    assert mirror.down_since("never-seen") == started
    await store.put(keys.node("n1"), node("n1"))
    await settle(store, mirror)
    assert mirror.down_since("n1") is None

    clock.now += 30
    await store.delete(keys.node("n1"))
    await settle(store, mirror)
    assert mirror.down_since("n1") == started + 30
    assert mirror.snapshot().node_down_since("n1") == started + 30
    assert mirror.snapshot().node_down_since("never-seen") == started

    clock.now += 5
    await store.put(keys.node("n1"), node("n1"))
    await settle(store, mirror)
    assert mirror.down_since("n1") is None


async def test_a_node_down_before_a_relist_counts_from_the_relist(
    store: Store, mirror: ClusterMirror, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.put(keys.node("n1"), node("n1"))
    await settle(store, mirror)
    monkeypatch.setattr(memory, "HISTORY", 1)
    clock.now += 7
    await store.delete(keys.node("n1"))
    for index in range(5):
        await store.put(keys.node(f"x{index}"), node(f"x{index}"))
    await settle(store, mirror)
    assert mirror.listings == 2
    assert mirror.down_since("n1") == clock.now


async def test_expected_documents_are_taken_as_written_only_when_the_value_matches(
    store: Store, mirror: ClusterMirror
) -> None:
    spec = TaskSpec(image="nginx")
    mine = Task(id="t1", service="web", slot=1, node_id="n1", spec_version=1, spec=spec)
    other = mine.model_copy(update={"slot": 2})
    mirror.expect([(keys.task("n1", "t1"), mine.dump(), mine)])
    mirror.expect([(keys.task("n1", "t2"), other.dump(), other)])
    await store.put(keys.task("n1", "t1"), mine.dump())
    changed = other.model_copy(update={"id": "t2", "slot": 3})
    await store.put(keys.task("n1", "t2"), changed.dump())  # not what was expected
    await settle(store, mirror)
    assert mirror.tasks["t1"] is mine  # not parsed again
    assert mirror.tasks["t2"] is not other
    assert mirror.tasks["t2"].slot == 3
    mirror.clear_expected()
