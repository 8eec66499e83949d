"""The applier against the memory store: fenced, guarded, batched, never half-applied."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest

from controlplane import keys
from controlplane.models import LeaderRecord
from controlplane.reconciler import NotLeader, Plan, ReconcilerConfig, apply_plan, plan
from controlplane.reconciler.applier import txn_parts
from controlplane.reconciler.config import LEADER_TXN_ITEMS
from controlplane.state import ClusterSnapshot
from controlplane.state.contents import ClusterContents
from discovery import Compare, Op, Store, TxnResult, open_store
from tests.reconciler.world import World

LEADER = LeaderRecord(manager_id="m1", api_url="http://m1", term_started=0.0)


class CountingStore:
    """Wraps a store: records each transaction's size; can run a hook after one."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sizes: list[int] = []
        self.after_txn: list[Callable[[], Awaitable[None]]] = []

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        self.sizes.append(len(compares) + len(ops))
        result = await self.store.txn(compares, ops)
        if self.after_txn:
            hook = self.after_txn.pop(0)
            await hook()
        return result


@pytest.fixture
async def store(memory_url: str) -> AsyncIterator[Store]:
    opened = await open_store(memory_url)
    yield opened
    await opened.close()


async def snapshot_of(store: Store) -> ClusterSnapshot:
    listing = await store.list("")
    contents = ClusterContents.from_listing(listing, now=0.0)
    return contents.snapshot(revision=listing.revision, watching_since=0.0)


async def cluster(store: Store, *, replicas: int) -> tuple[int, Plan]:
    """Three nodes and a service written to `store`; the leader's token and first plan."""
    world = World()
    for node_id in ("n1", "n2", "n3"):
        world.add_node(node_id)
    world.create_service("web", replicas=replicas)
    for key, (value, _) in world.kv.items():
        await store.put(key, value)
    token = await store.put(keys.LEADER, LEADER.dump())
    decided = plan(await snapshot_of(store), now=1000.0, config=ReconcilerConfig())
    return token, decided


async def task_keys(store: Store) -> list[str]:
    return [kv.key for kv in (await store.list(keys.TASKS)).items]


async def test_applies_a_plan_in_transactions_of_at_most_64_items(store: Store) -> None:
    token, decided = await cluster(store, replicas=40)
    counting = CountingStore(store)
    result = await apply_plan(counting, decided, fencing_token=token)
    assert result.applied == 40
    assert result.conflicts == 0
    assert len(await task_keys(store)) == 40
    assert len((await store.list(keys.STATUS)).items) == 40
    assert max(counting.sizes) <= 64
    assert len(counting.sizes) == result.transactions == 3  # 1 fence + 15 creates of 4


async def test_a_big_plan_goes_out_in_pieces_even_where_the_store_takes_it_whole(
    store: Store,
) -> None:
    """The file store takes 65,536 items in one transaction; the leader still writes
    about a thousand new tasks at a time, so the first land (and their nodes start
    them) while the rest are being written. A store with a lower limit sets it."""
    config = ReconcilerConfig()
    assert config.txn_items(65_536) == LEADER_TXN_ITEMS
    assert config.txn_items(128) == 128
    assert ReconcilerConfig(max_txn_items=10_000).txn_items(65_536) == 10_000

    token, decided = await cluster(store, replicas=2500)
    counting = CountingStore(store)
    items = config.txn_items(65_536)
    result = await apply_plan(counting, decided, fencing_token=token, max_txn_items=items)
    assert result.applied == 2500
    assert len(await task_keys(store)) == 2500
    assert counting.sizes[0] == 1 + (LEADER_TXN_ITEMS - 1) // 4 * 4  # the fence + whole ops
    assert max(counting.sizes) <= LEADER_TXN_ITEMS
    assert len(counting.sizes) == 3


async def test_a_deposed_leader_writes_nothing(store: Store) -> None:
    token, decided = await cluster(store, replicas=10)
    await store.put(keys.LEADER, LEADER.dump())  # another term began
    with pytest.raises(NotLeader):
        await apply_plan(store, decided, fencing_token=token)
    assert await task_keys(store) == []
    assert (await store.list(keys.STATUS)).items == []


async def test_losing_the_lease_midway_stops_at_a_transaction_boundary(store: Store) -> None:
    token, decided = await cluster(store, replicas=40)
    counting = CountingStore(store)

    async def new_leader() -> None:
        await store.put(keys.LEADER, LEADER.dump())

    counting.after_txn.append(new_leader)
    with pytest.raises(NotLeader):
        await apply_plan(counting, decided, fencing_token=token)
    written = await task_keys(store)
    assert len(written) == 15  # the first transaction, whole; nothing after it
    statuses = {kv.key for kv in (await store.list(keys.STATUS)).items}
    assert statuses == {keys.status(keys.last_segment(key)) for key in written}


async def test_a_stale_guard_drops_its_op_and_applies_the_rest(store: Store) -> None:
    token, decided = await cluster(store, replicas=3)
    first = decided.ops[0]
    _, writes = txn_parts(first)
    await store.put(writes[0].key, b"written meanwhile")  # e.g. a retry that landed
    result = await apply_plan(store, decided, fencing_token=token)
    assert result.applied == 2
    assert result.conflicts == 1
    assert len(await task_keys(store)) == 3  # the stranger's value and two new tasks


async def test_replanning_the_same_snapshot_writes_nothing_twice(store: Store) -> None:
    token, decided = await cluster(store, replicas=5)
    await apply_plan(store, decided, fencing_token=token)
    again = await apply_plan(store, decided, fencing_token=token)
    assert again.applied == 0
    assert again.conflicts == 5
    assert len(await task_keys(store)) == 5
