"""Global services: one task on every eligible node, following nodes as they come and go.

A node is **eligible for a new task** when it is up (its heartbeat key exists), its
availability is `active`, and it satisfies the service's placement constraints and
platforms; the scheduler then checks that the task fits there (resources, host ports),
pinned to that node. A task its node cannot take waits under `pending/` with the
scheduler's reason (as swarm mode shows it), keeping its node in `pinned_node`, and is
placed there as soon as the node can take it (resources freed, a port released).

A node **keeps its task** while it is known (a node spec or a heartbeat), not drained,
and, when up, still satisfies the constraints. So:

- a node joins, or becomes active: it gets a task;
- a node is paused: it keeps its task and gets none if it had none;
- a node is drained, removed, or no longer matches: its task is stopped (retired);
- a node goes down: its task stays through the grace period, then is orphaned
  (`node_down`); when the node is back the orphan is deleted and a new task made.

Each node's tasks form one slot (keyed by node id, with no slot number), so restart
policy, history and the rolling update work as for replicated services.
"""

from __future__ import annotations

from controlplane.models import Availability
from controlplane.reconciler import history
from controlplane.reconciler.builder import PlanBuilder
from controlplane.reconciler.placement import Placement
from controlplane.reconciler.slots import Slot, reconcile_slot
from controlplane.reconciler.update import UpdateRun
from controlplane.reconciler.view import ServiceContext, TaskInfo, newest_first


def reconcile_global(
    ctx: ServiceContext, tasks: list[TaskInfo], *, out: PlanBuilder, nodes: Placement
) -> None:
    view = out.view
    by_node: dict[str, list[TaskInfo]] = {}
    misfits: list[TaskInfo] = []
    for info in tasks:
        node_id = info.task.pinned_node if info.pending else info.node_id
        if info.task.slot is not None or not node_id:
            misfits.append(info)
        else:
            by_node.setdefault(node_id, []).append(info)
    history.retire(misfits, reason="not a global task", out=out)

    known = set(view.node_ids())
    slots: list[Slot] = []
    for node_id in sorted(known | set(by_node)):
        found = newest_first(by_node.get(node_id, []))
        up = node_id in view.snapshot.nodes
        availability = view.availability(node_id)
        matches = nodes.matches(ctx, node_id) if up else True
        can_create = up and availability is Availability.ACTIVE and matches
        keeps = node_id in known and availability is not Availability.DRAIN and matches
        if can_create or (keeps and found):
            slots.append(Slot(slot=None, node_id=node_id, tasks=found, can_create=can_create))
        elif found:
            history.retire(found, reason=_why_not(availability, known=node_id in known), out=out)

    update = UpdateRun(ctx, slots, out=out)
    if update.begin():
        return
    for slot in slots:
        reconcile_slot(slot, ctx=ctx, out=out, fresh="node joined")
    update.advance(slots)
    keep = history.kept_per_slot(ctx.spec.restart_policy, history_limit=view.config.history_limit)
    for slot in slots:
        # A new task made this pass is part of the slot's history from now on.
        history.trim(slot.tasks, keep=keep - slot.replacing, out=out)


def _why_not(availability: Availability, *, known: bool) -> str:
    if not known:
        return "node removed"
    if availability is Availability.DRAIN:
        return "node drained"
    return "node no longer matches"
