"""Change notifications: the queue behind every runtime's `changes()`.

An agent learns that a task's unit started or exited from `changes()` and then looks at
`observe()`; the notification carries only a task id. That makes a slow consumer cheap:
an id already waiting in a subscriber's queue is not queued twice, so a queue never holds
more entries than there are tasks, however many times they flap.

A subscription starts when `changes()` returns, not when the consumer first awaits it:
a task that exits between the two calls is still announced. Subscribers are held weakly,
so an iterator the agent drops simply stops receiving.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable


class ChangeStream:
    """One subscriber's task ids, in order, without duplicates while they wait."""

    __slots__ = ("__weakref__", "_closed", "_on_close", "_queue", "_queued")

    def __init__(self, *, on_close: Callable[[], None] | None = None) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._queued: set[str] = set()
        self._closed = False
        self._on_close = on_close

    def publish(self, task_id: str) -> None:
        """Queue `task_id` unless it is already waiting; call from the loop's thread."""
        if self._closed or task_id in self._queued:
            return
        self._queued.add(task_id)
        self._queue.put_nowait(task_id)

    def __aiter__(self) -> ChangeStream:
        return self

    async def __anext__(self) -> str:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        task_id = await self._queue.get()
        if task_id is None:
            raise StopAsyncIteration
        self._queued.discard(task_id)
        return task_id

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """End the iteration: a waiting `__anext__` returns StopAsyncIteration."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

    @property
    def closed(self) -> bool:
        return self._closed


class ChangeFeed:
    """Fans task ids out to every open `ChangeStream` of one runtime."""

    __slots__ = ("_streams",)

    def __init__(self) -> None:
        self._streams: weakref.WeakSet[ChangeStream] = weakref.WeakSet()

    def subscribe(self) -> ChangeStream:
        stream = ChangeStream()
        self._streams.add(stream)
        return stream

    def publish(self, task_id: str) -> None:
        for stream in list(self._streams):
            stream.publish(task_id)

    def close(self) -> None:
        for stream in list(self._streams):
            stream.close()
        self._streams.clear()
