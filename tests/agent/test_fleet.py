"""Hollow mode in-process: many nodes on one store connection and one shared task watch.

What a scale test relies on: every hollow node is a node to the cluster (its own key,
its own tasks, its own statuses), a node never sees another node's tasks, and the
shared watch loses no event, even for a node that subscribes after its listing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane import keys
from controlplane.agent import fleet as fleet_module
from controlplane.agent.fleet import HollowFleet
from controlplane.agent.heartbeat import renewer_for
from controlplane.agent.runtime_factory import RuntimeOptions, runtime_factory
from controlplane.agent.shared_watch import DISPATCH_SLICE, SharedTaskWatch
from controlplane.models.task import TaskState
from discovery import Event, Lease, Put, RevisionCompacted, Store, open_store
from tests.agent.conftest import FlakyStore, eventually, make_task, put_task, state_is


@pytest.fixture
async def plain_store(memory_url: str) -> AsyncIterator[Store]:
    store = await open_store(memory_url)
    try:
        yield store
    finally:
        await store.close()


async def first_events(watch: AsyncIterator[Event], count: int) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(5.0):
        async for event in watch:
            events.append(event)
            if len(events) == count:
                break
    return events


async def test_shared_watch_routes_each_nodes_events_and_replays_recent_ones(
    plain_store: Store,
) -> None:
    shared = SharedTaskWatch(plain_store, history=3)
    start = (await plain_store.list(keys.TASKS)).revision + 1
    first = shared.watch(keys.node_tasks("n1"), start_revision=start)
    first_seen = asyncio.create_task(first_events(first, 2))
    await asyncio.sleep(0.05)
    await plain_store.put(keys.task("n1", "a"), b"1")
    late_start = (await plain_store.list(keys.TASKS)).revision + 1
    await plain_store.put(keys.task("n2", "b"), b"2")  # before n2 subscribes
    await plain_store.put(keys.task("n1", "c"), b"3")
    assert [e.key for e in await first_seen] == ["tasks/n1/a", "tasks/n1/c"]

    late = shared.watch(keys.node_tasks("n2"), start_revision=late_start)
    assert [e.key for e in await first_events(late, 1)] == ["tasks/n2/b"]

    for i in range(4):  # push the early revisions out of the 3-event history
        await plain_store.put(keys.task("n3", f"x{i}"), b"x")
    await asyncio.sleep(0.05)
    with pytest.raises(RevisionCompacted):
        await first_events(shared.watch(keys.node_tasks("n2"), start_revision=late_start), 1)
    await shared.close()


async def test_a_large_revision_is_handed_out_in_slices(plain_store: Store) -> None:
    """10,000 new tasks arrive as one revision; the nodes that got the first ones start
    on them (and their statuses go out) while the rest are still being handed out,
    instead of every node waiting until the whole revision is dispatched."""
    shared = SharedTaskWatch(plain_store)
    start = (await plain_store.list(keys.TASKS)).revision + 1
    count = 4 * DISPATCH_SLICE
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def first_tick(node: str) -> int:
        watch = shared.watch(keys.node_tasks(node), start_revision=start)
        await first_events(watch, 1)
        return ticks

    ticking = asyncio.create_task(tick())
    first = asyncio.create_task(first_tick("n0000"))
    last = asyncio.create_task(first_tick(f"n{count - 1:04d}"))
    await asyncio.sleep(0.05)
    await plain_store.txn([], [Put(keys.task(f"n{i:04d}", "t"), b"{}") for i in range(count)])
    got_first, got_last = await first, await last
    ticking.cancel()
    await shared.close()
    assert got_last - got_first >= 3  # the loop ran between the slices


async def test_fleet_of_50_nodes_runs_each_nodes_tasks(plain_store: Store, tmp_path: Path) -> None:
    state_dir = tmp_path / "fleet"

    fleet = HollowFleet(
        count=50,
        state_dir=state_dir,
        advertise_addr="127.0.0.8",
        runtime=lambda index: runtime_factory(
            RuntimeOptions(name="hollow", advertise_addr="127.0.0.8", state_dir=state_dir)
        ),
        store=plain_store,
        heartbeat_period=0.5,
    )
    running = asyncio.create_task(fleet.run())
    try:

        async def all_up() -> bool:
            if running.done():
                running.result()
            return len((await plain_store.list(keys.NODES)).items) == 50

        await eventually(all_up, within=10.0, what="50 nodes registered")
        assert len({agent.node_id for agent in fleet.agents}) == 50
        assert (state_dir / "hollow-49" / "node.json").exists()
        tasks = [make_task(fleet.agents[i].node_id) for i in (3, 7, 7, 42)]
        for task in tasks:
            await put_task(plain_store, task)
        for task in tasks:
            await eventually(lambda t=task: state_is(plain_store, t.id, TaskState.RUNNING))
        for index, agent in enumerate(fleet.agents):
            assert agent.runtime is not None
            mine = {t.id for t in tasks if t.node_id == agent.node_id}
            assert {u.task_id for u in await agent.runtime.observe()} == mine, index
    finally:
        await fleet.stop()
        await running
    assert (await plain_store.list(keys.NODES)).items == []


async def test_fleet_renews_its_leases_together_and_a_lost_one_is_its_nodes_alone(
    plain_store: Store, tmp_path: Path
) -> None:
    state_dir = tmp_path / "fleet"
    fleet = HollowFleet(
        count=20,
        state_dir=state_dir,
        advertise_addr="127.0.0.8",
        runtime=lambda index: runtime_factory(
            RuntimeOptions(name="hollow", advertise_addr="127.0.0.8", state_dir=state_dir)
        ),
        store=plain_store,
        heartbeat_period=0.3,
    )
    renewer = renewer_for(plain_store)
    running = asyncio.create_task(fleet.run())
    try:

        async def renewed_twice() -> bool:
            if running.done():
                running.result()
            return renewer.renewals >= 2 * 20

        await eventually(renewed_twice, within=10.0, what="every node renewing twice")
        assert renewer.calls <= renewer.renewals / 4  # shared calls, not one per node
        lost = fleet.agents[5].heartbeat
        assert lost is not None
        assert lost.lease is not None
        await plain_store.revoke(lost.lease)

        async def back() -> bool:
            key = await plain_store.get(keys.node(lost.node_id))
            return lost.registrations == 2 and key is not None

        await eventually(back, within=5.0, what="the node whose lease ended registering again")
        for index, agent in enumerate(fleet.agents):
            assert agent.heartbeat is not None
            assert agent.heartbeat.registrations == (2 if index == 5 else 1), index
        assert len((await plain_store.list(keys.NODES)).items) == 20
    finally:
        await fleet.stop()
        await running


class SlowGrants(FlakyStore):
    """Every lease grant takes 0.1 s: a store on a busy machine."""

    async def grant(self, ttl: float) -> Lease:
        await asyncio.sleep(0.1)
        return await super().grant(ttl)


async def test_nodes_heartbeat_while_the_rest_of_the_fleet_still_registers(
    plain_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet_module, "START_CONCURRENCY", 1)
    store = SlowGrants(plain_store)
    state_dir = tmp_path / "fleet"
    fleet = HollowFleet(
        count=25,  # registered one at a time: 2.5 s, more than two lease TTLs
        state_dir=state_dir,
        advertise_addr="127.0.0.8",
        runtime=lambda index: runtime_factory(
            RuntimeOptions(name="hollow", advertise_addr="127.0.0.8", state_dir=state_dir)
        ),
        store=store,
        heartbeat_period=0.3,  # TTL: the store's minimum, 1 s
    )
    running = asyncio.create_task(fleet.run())
    try:

        async def all_up() -> bool:
            if running.done():
                running.result()
            heartbeats = [agent.heartbeat for agent in fleet.agents]
            return len(heartbeats) == 25 and all(h is not None for h in heartbeats)

        await eventually(all_up, within=15.0, what="25 nodes registered")
        await asyncio.sleep(1.0)
        for index, agent in enumerate(fleet.agents):
            assert agent.heartbeat is not None
            assert agent.heartbeat.registrations == 1, f"node {index} lost its lease"
        assert len((await plain_store.list(keys.NODES)).items) == 25
    finally:
        await fleet.stop()
        await running
    assert (await plain_store.list(keys.NODES)).items == []
