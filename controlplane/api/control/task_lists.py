"""Sorted task lists kept between calls: one per service asked for, and one of every task.

`GET /tasks?service=big` at ten thousand tasks was mostly building the list again on
every call: an `ObservedTask` per task, then a sort. `TaskLists` keeps each list it built
with the mirror's `tasks_version` of its scope (a service, or None for all tasks) and
hands it out again while that version is the same; any change to a task or a status of
the scope (a put, a delete, a relist) changes the version, so a list is never served
after what it shows has changed. Lists are sorted by `sort_key`, and keep the keys, so
that a page after a cursor is a binary search.

Only a scope the index knows is kept: a service name with tasks, or every task. Any
other filter (`node`, desired state, state) and paging read the kept list; a service
filter that names no task of the index (perhaps a service id) takes the walk in
`tasks.list_tasks`.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from controlplane.api.control.tasks import (
    ObservedTask,
    SortKey,
    TaskFilter,
    after_key,
    cursor_of,
    sort_key,
)
from controlplane.api.control.view import ClusterView

#: How many service lists are kept at most (the least recently built go first).
MAX_LISTS = 64


@dataclass(frozen=True, slots=True)
class TaskList:
    """The tasks of one scope, sorted, as of `version`."""

    scope: str | None
    version: tuple[int, int]
    keys: list[SortKey]
    items: list[ObservedTask]


class TaskLists:
    """Kept lists, checked against the view's version on every use."""

    def __init__(self, *, max_lists: int = MAX_LISTS) -> None:
        self._max_lists = max_lists
        self._lists: dict[str | None, TaskList] = {}
        #: How many lists were built (a test's way to see a list kept or not).
        self.builds = 0

    def get(self, view: ClusterView, service: str | None) -> TaskList | None:
        """The tasks of `service` (None: all), current; None when the index has none."""
        version = view.tasks_version(service)
        kept = self._lists.get(service)
        if kept is not None and kept.version == version:
            return kept
        tasks = view.tasks.values() if service is None else view.tasks_of(service)
        if service is not None and not tasks:
            self._lists.pop(service, None)
            return None
        statuses = view.statuses
        pairs = sorted(
            (
                (sort_key(task), ObservedTask(task=task, status=statuses.get(task.id)))
                for task in tasks
            ),
            key=lambda pair: pair[0],
        )
        built = TaskList(
            scope=service,
            version=version,
            keys=[key for key, _ in pairs],
            items=[item for _, item in pairs],
        )
        self.builds += 1
        self._lists.pop(service, None)
        self._lists[service] = built
        while len(self._lists) > self._max_lists:
            del self._lists[next(iter(self._lists))]
        return built


def select(
    kept: TaskList, query: TaskFilter, *, limit: int | None, after: str | None
) -> tuple[list[ObservedTask], str | None]:
    """What `tasks.page(tasks.list_tasks(view, query), ...)` answers, from a kept list
    (`query.service` is the list's scope, or None)."""
    items, keys = kept.items, kept.keys
    start = 0 if after is None else bisect_right(keys, after_key(after))
    filtered = query.node is not None or query.desired_state is not None or query.state is not None
    if not filtered:
        found = items[start:] if limit is None else items[start : start + limit + 1]
    else:
        found = []
        for item in items[start:]:
            task = item.task
            if query.node is not None and task.node_id != query.node:
                continue
            if query.desired_state is not None and task.desired_state is not query.desired_state:
                continue
            if query.state is not None and item.state is not query.state:
                continue
            found.append(item)
            if limit is not None and len(found) > limit:
                break
    if limit is None or len(found) <= limit:
        return found, None
    return found[:limit], cursor_of(found[limit - 1].task)
