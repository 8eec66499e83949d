"""Reporting task status: `status/<task-id>`, written at once, or later if the store is down.

The executor reports each transition as it happens. When the store cannot take a write,
the status is not lost and not retried in line (that would stall the task's work): the
latest status per task is kept, and a flusher writes what is kept, in batches, once the
store answers again. Only the latest matters: a reader wants to know where the task is
now, and a task that went running -> failed while the store was away is reported failed.

A task whose status is still kept always goes through the flusher, so an older status can
never land after a newer one. Forgetting a task (its key was deleted) drops what is kept
and deletes its status key, by the same route.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from controlplane import keys
from controlplane.agent.backoff import Backoff
from controlplane.models import TaskStatus
from discovery import Delete, DiscoveryError, Op, Put, Store, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Statuses written by one flush transaction.
FLUSH_BATCH = 64


class StatusReporter:
    """Writes task statuses for one node; keeps the latest unwritten one per task."""

    def __init__(self, store: Store, *, op_timeout: float = 5.0) -> None:
        self._store = store
        self._op_timeout = op_timeout
        # task id -> the status still to write, or None: its status key is to be deleted
        self._kept: dict[str, TaskStatus | None] = {}
        self._wake = asyncio.Event()

    @property
    def kept(self) -> int:
        """How many tasks have a status waiting for the store."""
        return len(self._kept)

    async def report(self, status: TaskStatus) -> None:
        """Write `status` now; if the store does not take it, keep it for the flusher."""
        if status.task_id in self._kept:
            self._keep(status.task_id, status)
            return
        try:
            await self._bounded(self._store.put(keys.status(status.task_id), status.dump()))
        except (StoreUnavailable, TimeoutError) as exc:
            log.info("status of task %s kept until the store answers: %s", status.task_id, exc)
            self._keep(status.task_id, status)

    async def forget(self, task_id: str) -> None:
        """Drop any kept status of `task_id` and delete its status key."""
        if task_id in self._kept:
            self._keep(task_id, None)
            return
        try:
            await self._bounded(self._store.delete(keys.status(task_id)))
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
