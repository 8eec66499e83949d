"""Task logs, fetched from the nodes that ran the tasks, as one stream of JSON objects.

A task's output lives on its node only, so each task's lines come from that node's
agent endpoint (`controlplane.agent.api`). One object per line:

    {"task_id", "service", "slot", "node_id", "node", "stream", "line", "time"}

A node that is down, serves no endpoint, or does not answer costs its tasks' lines, and
instead one `{"task_id", "node_id", "error"}` object says why; the other tasks' lines
still come. A service's tasks are read one after the other (slot, then age), or all at
once when following, their lines interleaved as they arrive.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from controlplane.agent.api.client import AgentClient, AgentError
from controlplane.api.control.errors import Invalid
from controlplane.api.control.view import ClusterView
from controlplane.models import Task

LogItem = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LogQuery:
    tail: int | None = None  # None: every line
    timestamps: bool = False
    follow: bool = False


def parse_tail(text: str) -> int | None:
    """`all` or a number of lines; `Invalid` naming the `tail` parameter otherwise."""
    if text == "all":
        return None
    if not text.isdigit():
        raise Invalid(("query", "tail"), f"tail must be a number of lines or 'all', not {text!r}")
    return int(text)


def tasks_with_output(tasks: Sequence[Task]) -> list[Task]:
    """Tasks that ever reached a node (a pending one has no output), slot then age."""
    placed = [task for task in tasks if task.node_id]
    return sorted(placed, key=lambda t: (t.slot or 0, t.created, t.id))


async def task_lines(view: ClusterView, task: Task, query: LogQuery) -> AsyncIterator[LogItem]:
    """One task's lines, or one error object when its node cannot give them."""
    node = view.nodes.get(task.node_id)
    base: LogItem = {
        "task_id": task.id,
        "service": task.service,
        "slot": task.slot,
        "node_id": task.node_id,
        "node": node.hostname if node else "",
    }
    try:
        client = AgentClient(node, node_id=task.node_id)
        async for item in client.logs(
            task.id, tail=query.tail, timestamps=query.timestamps, follow=query.follow
        ):
            yield {
                **base,
                "stream": item.get("stream", "stdout"),
                "line": item.get("line", ""),
                "time": item.get("time") if query.timestamps else None,
            }
    except AgentError as exc:
        yield {"task_id": task.id, "node_id": task.node_id, "error": str(exc)}


async def many_task_lines(
    view: ClusterView,
    tasks: Sequence[Task],
    query: LogQuery,
    *,
    more: Callable[[], Sequence[Task]] | None = None,
    until: asyncio.Event | None = None,
) -> AsyncIterator[LogItem]:
    """Every task's lines: task after task, or interleaved as they come when following.

    Following with `more` (a service's tasks as they are now), tasks that reach a node
    later are followed too, from their first line, and the stream lasts until the client
    leaves or `until` is set; without it, it ends when every task's stream has.
    """
    if not query.follow:
        for task in tasks:
            async for item in task_lines(view, task, query):
                yield item
        return
    queue: asyncio.Queue[LogItem | None] = asyncio.Queue(maxsize=1000)

    async def pump(task: Task, task_query: LogQuery) -> None:
        try:
            async for item in task_lines(view, task, task_query):
                await queue.put(item)
        finally:
            await queue.put(None)

    if more is not None:  # a task not started yet is picked up once it is
        tasks = [task for task in tasks if _started(view, task)]
    followed = {task.id for task in tasks}
    pumps = [asyncio.create_task(pump(task, query)) for task in tasks]
    from_start = LogQuery(tail=None, timestamps=query.timestamps, follow=True)
    revision = view.revision
    try:
        remaining = len(pumps)
        while remaining or more is not None:
            got_item = asyncio.ensure_future(queue.get())
            waits: set[asyncio.Future[Any]] = {got_item}
            if more is not None:
                waits.add(asyncio.ensure_future(view.wait_changed(revision)))
            if until is not None:
                waits.add(asyncio.ensure_future(until.wait()))
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiting in pending:
                waiting.cancel()
            if got_item in done:
                got = got_item.result()
                if got is None:
                    remaining -= 1
                else:
                    yield got
            elif not got_item.cancelled() and got_item.done():  # raced: keep the item
                await queue.put(got_item.result())
            if until is not None and until.is_set():
                return
            if more is not None and view.revision != revision:
                revision = view.revision
                for task in tasks_with_output(more()):
                    if task.id not in followed and _started(view, task):
                        followed.add(task.id)
                        pumps.append(asyncio.create_task(pump(task, from_start)))
                        remaining += 1
    finally:
        for running in pumps:
            running.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


def _started(view: ClusterView, task: Task) -> bool:
    """Whether the task's node has made its container (so it has output to follow)."""
    status = view.statuses.get(task.id)
    return status is not None and bool(status.container_id)
