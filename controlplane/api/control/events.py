"""Cluster events for `/events`: node, service and task changes, derived from the mirror.

Each subscriber keeps a fingerprint of what it last saw (the document objects
themselves: the mirror replaces a document on every change and never mutates one, so
`is` tells a change) and, whenever the mirror moves on, reports the difference as
create, update and remove events. Changes that land between two looks are coalesced
into one event per object, which is what a watcher of current state wants; a
subscriber costs one pass over the cluster per change it sees, and nothing when idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from enum import StrEnum

from controlplane.api.control.tasks import observed
from controlplane.api.control.view import ClusterView


class EventType(StrEnum):
    NODE = "node"
    SERVICE = "service"
    TASK = "task"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    type: EventType
    action: Action
    id: str
    revision: int
    attributes: dict[str, str] = field(default_factory=dict)


Fingerprint = dict[tuple[EventType, str], tuple[object, ...]]


def fingerprint(view: ClusterView, types: Collection[EventType]) -> Fingerprint:
    seen: Fingerprint = {}
    if EventType.NODE in types:
        for node_id in set(view.nodes) | set(view.node_specs):
            seen[(EventType.NODE, node_id)] = (
                view.nodes.get(node_id),
                view.node_specs.get(node_id),
            )
    if EventType.SERVICE in types:
        for name, record in view.services.items():
            seen[(EventType.SERVICE, name)] = (record,)
    if EventType.TASK in types:
        for task_id, task in view.tasks.items():
            seen[(EventType.TASK, task_id)] = (task, view.statuses.get(task_id))
    return seen


def _changed(old: tuple[object, ...], new: tuple[object, ...]) -> bool:
    return any(a is not b for a, b in zip(old, new, strict=True))


def _attributes(view: ClusterView, kind: EventType, ref: str) -> dict[str, str]:
    if kind is EventType.NODE:
        info, spec = view.nodes.get(ref), view.node_specs.get(ref)
        attrs = {"status": "ready" if info is not None else "down"}
        if info is not None:
            attrs["hostname"] = info.hostname
        if spec is not None:
            attrs["availability"] = spec.availability.value
            attrs["role"] = spec.role.value
        return attrs
    if kind is EventType.SERVICE:
        record = view.services.get(ref)
        if record is None:
            return {"name": ref}
        return {"name": ref, "id": record.id, "spec_version": str(record.spec_version)}
    task = view.tasks.get(ref)
    if task is None:
        return {}
    return {
        "service": task.service,
        "node_id": task.node_id,
        "desired_state": task.desired_state.value,
        "state": observed(view, task).state.value,
    }


def diff(
    view: ClusterView,
    before: Fingerprint,
    after: Fingerprint,
    *,
    revision: int,
) -> list[ClusterEvent]:
    events = []
    for key in after.keys() - before.keys():
        events.append(
            ClusterEvent(key[0], Action.CREATE, key[1], revision, _attributes(view, *key))
        )
    for key in after.keys() & before.keys():
        if _changed(before[key], after[key]):
            events.append(
                ClusterEvent(key[0], Action.UPDATE, key[1], revision, _attributes(view, *key))
            )
    for key in before.keys() - after.keys():
        attrs = {"name": key[1]} if key[0] is EventType.SERVICE else {}
        events.append(ClusterEvent(key[0], Action.REMOVE, key[1], revision, attrs))
    order = list(EventType)
    return sorted(events, key=lambda e: (order.index(e.type), e.id))


async def cluster_events(
    view: ClusterView,
    *,
    types: Collection[EventType] = tuple(EventType),
    until: asyncio.Event | None = None,
) -> AsyncIterator[ClusterEvent]:
    """Every change of the given kinds from now on, until `until` is set (or forever)."""
    wanted = frozenset(types)
    revision = view.revision
    before = fingerprint(view, wanted)
    while True:
        if not await _changed_or_closing(view, revision, until):
            return
        after = fingerprint(view, wanted)
        revision = view.revision  # read with the fingerprint: no await in between
        for event in diff(view, before, after, revision=revision):
            yield event
        before = after


async def _changed_or_closing(
    view: ClusterView, revision: int, until: asyncio.Event | None
) -> bool:
    """True once the view moves past `revision`; False when `until` is set first."""
    if until is None:
        await view.wait_changed(revision)
        return True
    changed = asyncio.ensure_future(view.wait_changed(revision))
    closing = asyncio.ensure_future(until.wait())
    try:
        await asyncio.wait({changed, closing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in (changed, closing):
            future.cancel()
    return not until.is_set()
