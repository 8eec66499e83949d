"""One store watch shared by the many nodes of a hollow fleet.

Every node follows its own `tasks/<node-id>/`. For one agent that is one watch, and on
etcd even a thousand watches share one connection cheaply; but the file store polls per
watch, so a thousand hollow nodes would poll it ten thousand times a second. A fleet
therefore watches `tasks/` once and hands each node the events under its prefix.

Each node still lists its own prefix and watches "from the listing's revision + 1", as
the executor does everywhere: the shared watch keeps the last `history` events so that
a node subscribing a little after its listing misses nothing, and answers
`RevisionCompacted` (list again) when asked for older events than it kept, exactly as
a store would. A store error behind the shared watch is retried in one place; nodes
see only events, in order.

A big revision (the leader writing 10,000 tasks at once) is handed out `DISPATCH_SLICE`
events at a time, letting the loop run in between: the nodes that got the first tasks
start them, and their statuses go out, while the rest are still being handed out.
Handed out in one go, every node waited for the last event and the fleet's status
writes all landed at the end, in one burst.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator

from controlplane import keys
from controlplane.agent.backoff import Backoff
from discovery import Event, RevisionCompacted, Store, StoreUnavailable

log = logging.getLogger(__name__)

_Item = Event | RevisionCompacted

#: Events handed out before the pump lets the loop run what they woke (see `_follow`).
DISPATCH_SLICE = 200


class SharedTaskWatch:
    """`watch(prefix, start_revision=...)` for node prefixes, served by one store watch."""

    def __init__(self, store: Store, *, history: int = 10_000) -> None:
        self._store = store
        self._buffer: collections.deque[Event] = collections.deque()
        self._history = history
        self._covered_from = 0  # every event with revision >= this is still buffered
        self._subscribers: dict[str, set[asyncio.Queue[_Item]]] = {}
        self._pump: asyncio.Task[None] | None = None

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[Event]:
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        start = max(start_revision, 1)
        if self._pump is None or self._pump.done():
            self._buffer.clear()
            self._covered_from = start
            self._pump = asyncio.create_task(self._follow(start), name="shared-task-watch")
        elif start < self._covered_from:
            raise RevisionCompacted(start, self._covered_from)
        for event in self._buffer:  # what this subscriber would have seen already
            if event.revision >= start and event.key.startswith(prefix):
                queue.put_nowait(event)
        self._subscribers.setdefault(prefix, set()).add(queue)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, RevisionCompacted):
                    raise item
                yield item
        finally:
            subscribers = self._subscribers.get(prefix)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[prefix]

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    async def _follow(self, start: int) -> None:
        backoff = Backoff(first=0.2, cap=5.0)
        while True:
            try:
                dispatched = 0
                async for event in self._store.watch(keys.TASKS, start_revision=start):
                    start = event.revision + 1
                    self._dispatch(event)
                    backoff.reset()
                    dispatched += 1
                    if dispatched % DISPATCH_SLICE == 0:
                        await asyncio.sleep(0)
            except RevisionCompacted as exc:
                log.warning("shared task watch compacted: %s", exc)
                for subscribers in list(self._subscribers.values()):
                    for queue in subscribers:
                        queue.put_nowait(exc)
                return  # every node lists again; the next subscription starts a new watch
            except StoreUnavailable as exc:
                log.info("shared task watch interrupted (%s); resuming", exc)
                await asyncio.sleep(backoff.next_delay())

    def _dispatch(self, event: Event) -> None:
        self._buffer.append(event)
        if len(self._buffer) > self._history:
            dropped = self._buffer.popleft()
            self._covered_from = dropped.revision + 1
        try:
            node_id, _ = keys.split_task_key(event.key)
        except ValueError:
            return
        for queue in self._subscribers.get(keys.node_tasks(node_id), ()):
            queue.put_nowait(event)
