"""Reporting task status: `status/<task-id>`, written at once, or later if the store is down.

The executor reports each transition as it happens. When the store cannot take a write,
the status is not lost and not retried in line (that would stall the task's work): the
latest status per task is kept, and a flusher writes what is kept, in batches, once the
store answers again. Only the latest matters: a reader wants to know where the task is
now, and a task that went running -> failed while the store was away is reported failed.

A task whose status is still kept always goes through the flusher, so an older status can
never land after a newer one. Forgetting a task (its key was deleted) drops what is kept
and deletes its status key, by the same route.

Writes are coalesced (`StatusBatcher`): every reporter on one store connection (one
agent, or the thousand nodes of a hollow fleet) hands its write to that connection's
batcher, which waits `BATCH_WINDOW` for others and writes all of them in one
transaction (as many as the store takes: `Store.max_txn_ops`). A report still returns
only once its status is written (or raises what the store raised). Writes of one key
that wait in the same batch are written once, with the last value, and all return when
it lands: a reporter that does not wait for each report (a task that went starting ->
running within the window) costs one write. The executor queues `starting` without
waiting (`report_soon`: no future, a callback) and starts the unit at once: on a quick
runtime the two land as one write of `running`, and the status that was overtaken is
never even encoded (a batch encodes only the last status of each key). Every report
of a task is written in order: the batcher never has two writes of one key in flight.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

from controlplane import keys
from controlplane.agent.backoff import Backoff
from controlplane.agent.futures import settle
from controlplane.models import TaskStatus
from discovery import Delete, DiscoveryError, Op, Put, Store, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Statuses written by one flush transaction.
FLUSH_BATCH = 64
#: Seconds a batcher waits for more writes before it sends what it has.
BATCH_WINDOW = 0.005
#: Transactions a batcher has in flight at once (never two holding the same key).
BATCHES_IN_FLIGHT = 4


#: What waits for a write: a caller's future, or a callback told the outcome (None: landed).
Waiter = asyncio.Future[None] | Callable[[BaseException | None], None]
#: What is written: an operation, or a task status (put under `status/<id>`, encoded only
#: if it is the latest of its key when its batch is taken).
Item = Op | TaskStatus


def _key(item: Item) -> str:
    return keys.status(item.task_id) if isinstance(item, TaskStatus) else item.key


def _op(key: str, item: Item) -> Op:
    return Put(key, item.dump()) if isinstance(item, TaskStatus) else item


class StatusBatcher:
    """Coalesces the status writes made on one store connection (module docstring)."""

    def __init__(self, store: Store, *, window: float = BATCH_WINDOW) -> None:
        self._store = store
        self._window = window
        self._queue: collections.deque[tuple[str, Item, Waiter]] = collections.deque()
        self._sender: asyncio.Task[None] | None = None
        self._in_flight: set[str] = set()  # keys of the transactions being sent
        #: Transactions sent, and writes they carried: for tests and benchmarks.
        self.transactions = 0
        self.writes = 0

    async def write(self, item: Item) -> None:
        """Send `item` with the others of its batch; raises what the store raised."""
        await self.submit(item)

    def submit(self, item: Item) -> asyncio.Future[None]:
        """Queue `item` for the next batch; the future settles when its batch has landed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(item, future)
        return future

    def submit_soon(self, item: Item, done: Callable[[BaseException | None], None]) -> None:
        """Queue `item`; `done` is called with None once it landed, or with the error
        (`asyncio.CancelledError` if the batcher was cancelled first). No future."""
        self._enqueue(item, done)

    def _enqueue(self, item: Item, waiter: Waiter) -> None:
        self._queue.append((_key(item), item, waiter))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="status batcher")

    async def _send(self) -> None:
        sending: set[asyncio.Task[None]] = set()
        try:
            await asyncio.sleep(self._window)
            while True:
                while self._queue and len(sending) < BATCHES_IN_FLIGHT:
                    batch = self._take()
                    if not batch:  # the front waits for a key in flight
                        break
                    sending.add(asyncio.create_task(self._send_one(batch)))
                if not sending:
                    return
                _, sending = await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
        finally:  # cancelled with its loop: nobody waits forever
            for task in sending:
                task.cancel()
            _cancel_all([waiter for _, _, waiter in self._queue])
            self._queue.clear()  # told already: a later sender must not write them

    def _take(self) -> list[tuple[Op, list[Waiter]]]:
        """The next batch from the front of the queue: at most the store's limit of keys.

        Several writes of one key waiting together become one: the last of them, which
        settles every one of their waiters when it lands (only the latest status
        matters, and nobody can tell it apart from the earlier ones written just before).
        A status is encoded only then, and only the last of its key.
        Only the front is looked at (thousands may wait behind a batch of 128 on etcd).
        """
        batch: dict[str, tuple[Item, list[Waiter]]] = {}
        queue = self._queue
        limit = self._store.max_txn_ops
        while queue:
            key, item, waiter = queue[0]
            # a future already done: its reporter gave up waiting and kept the status
            if not (isinstance(waiter, asyncio.Future) and waiter.done()):
                queued = batch.get(key)
                if queued is not None:
                    queued[1].append(waiter)
                    batch[key] = (item, queued[1])
                elif len(batch) < limit and key not in self._in_flight:
                    batch[key] = (item, [waiter])
                else:
                    break
            queue.popleft()
        self._in_flight.update(batch)
        return [(_op(key, item), waiters) for key, (item, waiters) in batch.items()]

    async def _send_one(self, batch: list[tuple[Op, list[Waiter]]]) -> None:
        try:
            await self._write_batch(batch)
        except asyncio.CancelledError:  # with its loop: nobody waits forever
            _cancel_all([waiter for _, waiters in batch for waiter in waiters])
            raise
        finally:
            self._in_flight.difference_update(op.key for op, _ in batch)

    async def _write_batch(self, batch: list[tuple[Op, list[Waiter]]]) -> None:
        self.transactions += 1
        self.writes += len(batch)
        try:
            await self._store.txn([], [op for op, _ in batch])
        except (StoreUnavailable, TimeoutError) as exc:
            for _, waiters in batch:
                _settle_all(waiters, exc)
        except DiscoveryError:
            # refused as a whole (one bad value): each alone, so that the rest land
            for op, waiters in batch:
                try:
                    await self._store.txn([], [op])
                except Exception as exc:  # handed to the reporters it belongs to
                    _settle_all(waiters, exc)
                else:
                    _settle_all(waiters, None)
        else:
            for _, waiters in batch:
                _settle_all(waiters, None)


def _settle_all(waiters: list[Waiter], error: BaseException | None) -> None:
    for waiter in waiters:
        if isinstance(waiter, asyncio.Future):
            settle(waiter, error)
            continue
        try:
            waiter(error)
        except Exception:  # one reporter's bug must not stop the others' writes
            log.exception("a status write's callback failed")


def _cancel_all(waiters: list[Waiter]) -> None:
    for waiter in waiters:
        if isinstance(waiter, asyncio.Future):
            if not waiter.done():
                waiter.cancel()
        else:
            _settle_all([waiter], asyncio.CancelledError())


_batchers: weakref.WeakKeyDictionary[Store, StatusBatcher] = weakref.WeakKeyDictionary()


def batcher_for(store: Store) -> StatusBatcher:
    """The one batcher of this store connection, shared by every reporter on it."""
    found = _batchers.get(store)
    if found is None:
        found = _batchers[store] = StatusBatcher(store)
    return found


class StatusReporter:
    """Writes task statuses for one node; keeps the latest unwritten one per task."""

    def __init__(
        self, store: Store, *, op_timeout: float = 5.0, batcher: StatusBatcher | None = None
    ) -> None:
        self._store = store
        self._batcher = batcher or batcher_for(store)
        self._op_timeout = op_timeout
        # task id -> the status still to write, or None: its status key is to be deleted
        self._kept: dict[str, TaskStatus | None] = {}
        # task id -> its latest status not yet settled (what a failed earlier one yields to)
        self._latest: dict[str, TaskStatus] = {}
        self._wake = asyncio.Event()

    @property
    def kept(self) -> int:
        """How many tasks have a status waiting for the store."""
        return len(self._kept)

    async def report(self, status: TaskStatus) -> None:
        """Write `status` now; if the store does not take it, keep it for the flusher."""
        task_id = status.task_id
        if task_id in self._kept:
            self._keep(task_id, status)
            return
        self._latest[task_id] = status
        try:
            await self._bounded(self._batcher.submit(status))
        except (StoreUnavailable, TimeoutError) as exc:
            log.info("status of task %s kept until the store answers: %s", task_id, exc)
            self._keep(task_id, status)
        finally:
            if self._latest.get(task_id) is status:
                del self._latest[task_id]

    def report_soon(self, status: TaskStatus) -> None:
        """Queue `status` and return at once, for a transition whose work must not wait
        on the store (`starting`: the start follows at once).

        It goes out with the next batch, and a later report of the task waiting in the
        same batch lands in its place (one write for both). Order is kept: the batcher
        never has two writes of one key in flight. If the store does not take it and
        nothing newer was reported since, it is kept for the flusher like any other.
        """
        task_id = status.task_id
        if task_id in self._kept:
            self._keep(task_id, status)
            return
        self._latest[task_id] = status
        self._batcher.submit_soon(status, functools.partial(self._soon_done, status))

    def _soon_done(self, status: TaskStatus, error: BaseException | None) -> None:
        newest = self._latest.get(status.task_id) is status
        if newest:
            del self._latest[status.task_id]
        if error is None or isinstance(error, asyncio.CancelledError) or not newest:
            return  # landed, or another report of the task came after it
        if isinstance(error, (StoreUnavailable, TimeoutError)):
            log.info("status of task %s kept until the store answers: %s", status.task_id, error)
            self._keep(status.task_id, status)
        else:
            log.warning("the store refused the status of task %s: %s", status.task_id, error)

    async def forget(self, task_id: str) -> None:
        """Drop any kept status of `task_id` and delete its status key."""
        if task_id in self._kept:
            self._keep(task_id, None)
            return
        try:
            await self._bounded(self._batcher.write(Delete(keys.status(task_id))))
        except (StoreUnavailable, TimeoutError):
            self._keep(task_id, None)

    async def run(self) -> None:
        """Flush kept statuses whenever there are some, backing off while the store is down."""
        backoff = Backoff(first=0.2, cap=5.0)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._kept:
                try:
                    await self.flush()
                except (StoreUnavailable, TimeoutError) as exc:
                    delay = backoff.next_delay()
                    log.debug(
                        "flushing %d statuses failed (%s); retry in %.1fs", self.kept, exc, delay
                    )
                    await asyncio.sleep(delay)
                else:
                    backoff.reset()

    async def flush(self) -> None:
        """Write every kept status once; raises `StoreUnavailable` if the store refuses."""
        snapshot = list(self._kept.items())
        for start in range(0, len(snapshot), FLUSH_BATCH):
            chunk = snapshot[start : start + FLUSH_BATCH]
            ops: list[Op] = [
                Put(keys.status(task_id), status.dump())
                if status is not None
                else Delete(keys.status(task_id))
                for task_id, status in chunk
            ]
            try:
                await self._bounded(self._store.txn([], ops))
            except StoreUnavailable:
                raise
            except DiscoveryError as exc:  # refused for good (oversized...): do not loop
                log.error("dropping %d statuses the store refuses: %s", len(chunk), exc)
            for task_id, status in chunk:
                if self._kept.get(task_id, ...) is status:
                    del self._kept[task_id]
        if snapshot:
            log.info("flushed %d kept task statuses", len(snapshot))

    def kick(self) -> None:
        """Try the kept statuses now (the store just came back)."""
        if self._kept:
            self._wake.set()

    def _keep(self, task_id: str, status: TaskStatus | None) -> None:
        self._kept[task_id] = status
        self._wake.set()

    async def _bounded(self, call: Awaitable[T]) -> T:
        async with asyncio.timeout(self._op_timeout):  # not wait_for: it can lose a cancel
            return await call
