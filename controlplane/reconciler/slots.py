"""One slot: the place of one replica (or, for a global service, of one node's task).

A slot holds every task ever created for it that is still stored, newest first. Per
pass, in this order:

1. Each live task that has not ended is checked: lost with its node (`node_down`) or on
   a drained node (`drain`): it is stopped and the slot needs a new task now; pending
   with an old spec: it is deleted and the slot needs a new task now; otherwise it is
   *active*. A task on a node that is down but within its grace period stays active.
2. Several active tasks (a start-first update, or a race): if one is current and
   running, the others are stopped; else one current and one outdated task are kept,
   the most advanced of each (running, then newest), and the rest are stopped.
3. Pending active tasks are offered to the scheduler again (`pending`).
4. No active task: a new one is asked for now (step 1's reason, or a fresh slot), or,
   when the newest task ended on its own, when the restart policy says (`restart`).

Afterwards the slot tells the rolling update whether it is *outdated* (what it runs, or
last ran, has an old spec, and no replacement was asked for this pass) and whether it is
*in flight* (a current task that is not running yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.reconciler import drain, node_down, restart
from controlplane.reconciler.builder import PlanBuilder
from controlplane.reconciler.view import ServiceContext, TaskInfo


@dataclass(slots=True)
class Slot:
    slot: int | None  # the replica's slot number; None for a global service
    node_id: str | None  # the node, for a global service
    tasks: list[TaskInfo]  # newest first
    #: False where a new task may not go (a global service's node that is down, paused,
    #: or no longer matches): the slot keeps what it has and gets nothing new.
    can_create: bool = True
    active: list[TaskInfo] = field(default_factory=list)
    replacing: bool = False
    outdated: bool = False
    in_flight: bool = False

    @property
    def label(self) -> str:
        return str(self.slot) if self.slot is not None else f"node {self.node_id}"


def reconcile_slot(slot: Slot, *, ctx: ServiceContext, out: PlanBuilder, fresh: str) -> None:
    """Steps 1-4 of the module docstring; `fresh` is the reason for a slot's first task."""
    live = [info for info in slot.tasks if info.live]
    need: str | None = None
    active: list[TaskInfo] = []
    for info in live:
        if info.terminal:
            continue
        if node_down.replace_if_lost(info, out):
            need = need or "node down"
        elif drain.move_if_drained(info, out):
            need = need or "node drained"
        elif info.pending and not ctx.is_current(info):
            out.delete(info, reason="spec changed")
            need = need or "spec changed"
        else:
            node_down.wake_when_lost(info, out)
            active.append(info)

    if len(active) > 1:
        active = _deduplicate(active, ctx=ctx, out=out)
    for info in active:
        if info.pending:
            out.place_pending(ctx, info)

    if not active and slot.can_create:
        if need is not None:
            _new_task(slot, ctx=ctx, out=out, reason=need)
        elif not live:
            _new_task(slot, ctx=ctx, out=out, reason=fresh)
        else:
            due = restart.restart_at(
                live[0],
                slot.tasks,
                policy=ctx.spec.restart_policy,
                now=out.view.now,
                is_current=ctx.is_current,
            )
            if due is not None and due <= out.view.now:
                _new_task(slot, ctx=ctx, out=out, reason="restart")
            elif due is not None:
                out.wake_at(due)

    slot.active = active
    slot.in_flight = any(ctx.is_current(info) and not info.running for info in active)
    if slot.replacing:
        slot.outdated = False
    elif active:
        slot.outdated = not any(ctx.is_current(info) for info in active)
    else:
        slot.outdated = bool(live) and not ctx.is_current(live[0])


def replace_for_update(
    slot: Slot, *, ctx: ServiceContext, out: PlanBuilder, stop_first: bool
) -> None:
    """A rolling update's step for one slot: a new task, the old one stopped first or later."""
    if stop_first:
        for info in slot.active:
            out.shutdown(info, reason="update")
    _new_task(slot, ctx=ctx, out=out, reason="update")
    slot.in_flight = True
    slot.outdated = False


def _new_task(slot: Slot, *, ctx: ServiceContext, out: PlanBuilder, reason: str) -> None:
    out.new_task(ctx, slot=slot.slot, node_id=slot.node_id, reason=reason)
    slot.replacing = True


def _most_advanced(tasks: list[TaskInfo]) -> TaskInfo:
    running = [info for info in tasks if info.running]
    return (running or tasks)[0]


def _deduplicate(
    active: list[TaskInfo], *, ctx: ServiceContext, out: PlanBuilder
) -> list[TaskInfo]:
    current = [info for info in active if ctx.is_current(info)]
    outdated = [info for info in active if not ctx.is_current(info)]
    keep: list[TaskInfo] = []
    if current:
        keep.append(_most_advanced(current))
    if outdated and not (keep and keep[0].running):
        keep.append(_most_advanced(outdated))
    for info in active:
        if info not in keep:
            out.shutdown(info, reason="duplicate" if ctx.is_current(info) else "update")
    return keep
