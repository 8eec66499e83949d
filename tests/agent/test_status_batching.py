"""Status reports made at the same time on one store connection share transactions,
and no task's transition is lost or reordered on the way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from controlplane import keys
from controlplane.agent.status import StatusBatcher, StatusReporter
from controlplane.models import TaskState, TaskStatus
from discovery import Compare, Event, Op, Put, Store, TxnResult, open_store
from tests.agent.conftest import FlakyStore, eventually

PROGRESS = (TaskState.PREPARING, TaskState.STARTING, TaskState.RUNNING)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


async def status_events(store: Store, start: int, count: int) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(30):
        async for event in store.watch(keys.STATUS, start_revision=start):
            events.append(event)
            if len(events) == count:
                return events
    return events


async def test_concurrent_reports_share_transactions_and_keep_every_transition(
    store: Store,
) -> None:
    batcher = StatusBatcher(store)
    reporters = [StatusReporter(store, batcher=batcher) for _ in range(40)]
    start = (await store.list(keys.STATUS)).revision + 1

    async def one_task(index: int, reporter: StatusReporter) -> None:
        for state in PROGRESS:  # as the executor does: one report at a time per task
            await reporter.report(TaskStatus(task_id=f"t{index:03d}", state=state))

    await asyncio.gather(*(one_task(i, r) for i, r in enumerate(reporters)))
    assert batcher.writes == 3 * len(reporters)
    assert batcher.transactions < batcher.writes / 4  # shared, not one per report

    if store.exact_history:  # every transition is in the history, in order
        events = await status_events(store, start, 3 * len(reporters))
        by_task: dict[str, list[str]] = {}
        for event in events:
            assert event.value is not None
            status = TaskStatus.load(event.value)
            by_task.setdefault(status.task_id, []).append(status.state.value)
        assert by_task == {f"t{i:03d}": [s.value for s in PROGRESS] for i in range(40)}
    listing = await store.list(keys.STATUS)
    assert len(listing.items) == len(reporters)
    assert all(TaskStatus.load(kv.value).state is TaskState.RUNNING for kv in listing.items)


async def test_a_forgotten_task_loses_its_status_key(store: Store) -> None:
    reporter = StatusReporter(store, batcher=StatusBatcher(store))
    await reporter.report(TaskStatus(task_id="gone", state=TaskState.RUNNING))
    assert await store.get(keys.status("gone")) is not None
    await reporter.forget("gone")
    assert await store.get(keys.status("gone")) is None


async def test_more_reports_than_one_transaction_takes_are_split(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the file store takes 65,536 items: a lower limit keeps the test quick, and the
    # store itself refuses more than it says (so a batch over it would fail here)
    monkeypatch.setattr(store, "max_txn_ops", min(store.max_txn_ops, 4096))
    batcher = StatusBatcher(store)
    reporter = StatusReporter(store, batcher=batcher)
    count = store.max_txn_ops + 10
    await asyncio.gather(
        *(
            reporter.report(TaskStatus(task_id=f"x{i:05d}", state=TaskState.RUNNING))
            for i in range(count)
        )
    )
    assert batcher.transactions >= 2
    assert len((await store.list(keys.STATUS)).items) == count


async def test_writes_of_one_key_waiting_together_land_once_with_the_last_value(
    store: Store,
) -> None:
    batcher = StatusBatcher(store)
    start = (await store.list(keys.STATUS)).revision + 1
    key = keys.status("coalesced")
    writes = [
        batcher.write(Put(key, TaskStatus(task_id="coalesced", state=state).dump()))
        for state in PROGRESS
    ]
    other = batcher.write(Put(keys.status("other"), b"{}"))
    await asyncio.gather(*writes, other)  # every writer is settled

    assert (batcher.transactions, batcher.writes) == (1, 2)
    kv = await store.get(key)
    assert kv is not None
    assert TaskStatus.load(kv.value).state is TaskState.RUNNING
    if store.exact_history:
        events = await status_events(store, start, 2)
        assert [e.key for e in events] == [key, keys.status("other")]


class SlowTxns(FlakyStore):
    """Every transaction takes 50 ms; records the values each one wrote."""

    max_txn_ops = 2

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.sent: list[list[bytes]] = []

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        self.sent.append([op.value for op in ops if isinstance(op, Put)])
        await asyncio.sleep(0.05)
        return await super().txn(compares, ops)


async def test_batches_go_out_together_but_a_key_waits_for_its_previous_write(
    memory_url: str,
) -> None:
    async with await open_store(memory_url) as inner:
        store = SlowTxns(inner)
        batcher = StatusBatcher(store)
        first = asyncio.gather(*(batcher.write(Put(f"k{i}", b"%d" % i)) for i in range(6)))
        await asyncio.sleep(0.02)  # k0..k5 in flight, three transactions at once
        assert len(store.sent) == 3
        later = asyncio.gather(
            batcher.write(Put("k0", b"again")), batcher.write(Put("k0", b"last"))
        )
        await asyncio.gather(first, later)

        assert store.sent[3] == [b"last"]  # after k0's first write, and once
        kv = await inner.get("k0")
        assert kv is not None
        assert kv.value == b"last"


async def test_a_report_not_waited_for_lands_with_the_next_one_of_its_task(store: Store) -> None:
    batcher = StatusBatcher(store)
    reporter = StatusReporter(store, batcher=batcher)
    reporter.report_soon(TaskStatus(task_id="quick", state=TaskState.STARTING))
    await reporter.report(TaskStatus(task_id="quick", state=TaskState.RUNNING))
    assert (batcher.transactions, batcher.writes) == (1, 1)  # one write, the later status
    kv = await store.get(keys.status("quick"))
    assert kv is not None
    assert TaskStatus.load(kv.value).state is TaskState.RUNNING


async def test_a_report_not_waited_for_alone_is_written(store: Store) -> None:
    reporter = StatusReporter(store, batcher=StatusBatcher(store))
    reporter.report_soon(TaskStatus(task_id="alone", state=TaskState.STARTING))

    async def landed() -> bool:
        return await store.get(keys.status("alone")) is not None

    await eventually(landed, what="the status written")


async def test_a_failed_report_not_waited_for_is_kept_unless_a_newer_one_came(
    memory_url: str,
) -> None:
    async with await FlakyStore.open(memory_url) as store:
        reporter = StatusReporter(store, batcher=StatusBatcher(store))
        store.go_down()
        reporter.report_soon(TaskStatus(task_id="a", state=TaskState.STARTING))
        reporter.report_soon(TaskStatus(task_id="b", state=TaskState.STARTING))
        await reporter.report(TaskStatus(task_id="b", state=TaskState.RUNNING))

        async def both_kept() -> bool:
            return reporter.kept == 2

        await eventually(both_kept, what="both statuses kept")
        store.come_back()
        await reporter.flush()
        states = {}
        for task_id in ("a", "b"):
            kv = await store.get(keys.status(task_id))
            assert kv is not None
            states[task_id] = TaskStatus.load(kv.value).state
        # a's only status is kept; b's older one yields to the newer, never lands after it
        assert states == {"a": TaskState.STARTING, "b": TaskState.RUNNING}
