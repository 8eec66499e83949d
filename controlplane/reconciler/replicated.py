"""Replicated services: `replicas` slots, each running one task.

A slot is *in service* while it has a live task (desired state running), whatever that
task's state: a slot whose restarts are exhausted stays in service, failed, until the
spec changes. The service's tasks are grouped by slot number, then:

1. **Retired slots** (no live task: scaled down earlier, still stopping) are cleaned up
   (`history.retire`); tasks without a slot number (left from a global service of the
   same name) are retired too.
2. **Scale down**: with more slots in service than `replicas`, the surplus is retired,
   chosen in this order: slots whose task is not running first (pending, starting,
   failed), then slots on the nodes with the most tasks of the service (one at a time,
   so that the remaining tasks stay spread), then the highest slot number. With every
   task running and evenly spread, that removes the highest slots.
3. **Scale up**: missing slots are created at the lowest free numbers, so a service
   scaled up from nothing runs slots 1..N.
4. **Rolling update**, failure side (`update.UpdateRun.begin`): a rollback ends the
   service's pass here.
5. Each slot in service is reconciled (`slots`): node down, drain, restart, pending.
6. **Rolling update**, progress side: the next batch, or completion.
7. Each slot's history is trimmed (`history`).
"""

from __future__ import annotations

import heapq
from collections import Counter

from controlplane.reconciler import history
from controlplane.reconciler.builder import PlanBuilder
from controlplane.reconciler.slots import Slot, reconcile_slot
from controlplane.reconciler.update import UpdateRun
from controlplane.reconciler.view import ServiceContext, TaskInfo, newest_first


def reconcile_replicated(ctx: ServiceContext, tasks: list[TaskInfo], *, out: PlanBuilder) -> None:
    by_slot: dict[int, list[TaskInfo]] = {}
    slotless: list[TaskInfo] = []
    for info in tasks:
        if info.task.slot is None:
            slotless.append(info)
        else:
            by_slot.setdefault(info.task.slot, []).append(info)
    history.retire(slotless, reason="not a replica", out=out)

    slots: dict[int, Slot] = {}
    for number, found in by_slot.items():
        ordered = newest_first(found)
        if any(info.live for info in ordered):
            slots[number] = Slot(slot=number, node_id=None, tasks=ordered)
        else:
            history.retire(ordered, reason="slot removed", out=out)

    wanted = ctx.spec.replicas
    if len(slots) > wanted:
        for number in surplus(list(slots.values()), count=len(slots) - wanted):
            history.retire(slots.pop(number).tasks, reason="scale down", out=out)
    fresh: set[int] = set()
    number = 0
    while len(slots) < wanted:
        number += 1
        if number not in slots:
            slots[number] = Slot(slot=number, node_id=None, tasks=[])
            fresh.add(number)

    ordered_slots = [slots[number] for number in sorted(slots)]
    update = UpdateRun(ctx, ordered_slots, out=out)
    if update.begin():
        return
    for slot in ordered_slots:
        reconcile_slot(slot, ctx=ctx, out=out, fresh="scale up")
    update.advance(ordered_slots)
    keep = history.kept_per_slot(
        ctx.spec.restart_policy, history_limit=out.view.config.history_limit
    )
    for slot in ordered_slots:
        # A new task made this pass is part of the slot's history from now on.
        history.trim(slot.tasks, keep=keep - slot.replacing, out=out)


def surplus(slots: list[Slot], *, count: int) -> list[int]:
    """The slot numbers to retire when scaling down by `count` (module docstring, 2)."""
    chosen: list[int] = []
    running: dict[str, list[int]] = {}
    idle: list[int] = []
    for slot in slots:
        assert slot.slot is not None
        on = [info for info in slot.tasks if info.live and info.running]
        if on:
            running.setdefault(on[0].node_id, []).append(slot.slot)
        else:
            idle.append(slot.slot)
    chosen.extend(sorted(idle, reverse=True)[:count])
    copies = Counter({node_id: len(numbers) for node_id, numbers in running.items()})
    for numbers in running.values():
        numbers.sort()
    heap = [(-copies[node_id], -numbers[-1], node_id) for node_id, numbers in running.items()]
    heapq.heapify(heap)
    while len(chosen) < count and heap:
        _, _, node_id = heapq.heappop(heap)
        numbers = running[node_id]
        chosen.append(numbers.pop())
        if numbers:
            heapq.heappush(heap, (-len(numbers), -numbers[-1], node_id))
    return chosen
