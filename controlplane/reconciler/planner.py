"""The planner: `plan(snapshot, *, now, config) -> Plan`, a pure function.

No store, no clock, no randomness: the same snapshot, time and config give the same
plan (task ids included; see `ids`). One pass:

1. classify every task once (`view`);
2. for each service, by name: its tasks go through `replicated` or `global_mode`;
   tasks of a removed (or removed and re-created) service are retired (`removed`);
3. statuses whose task is gone are deleted (`removed`);
4. new and pending tasks are placed with one scheduler call (`placement`).

The plan's ops are in decision order; `next_wakeup` is the earliest time something not
yet due becomes due. Cost: linear in tasks and nodes, plus the scheduler's share.
"""

from __future__ import annotations

from controlplane.models import ServiceMode
from controlplane.reconciler.builder import PlanBuilder
from controlplane.reconciler.config import ReconcilerConfig
from controlplane.reconciler.global_mode import reconcile_global
from controlplane.reconciler.placement import Placement
from controlplane.reconciler.plan import Plan
from controlplane.reconciler.removed import delete_dangling_statuses, retire_orphans
from controlplane.reconciler.replicated import reconcile_replicated
from controlplane.reconciler.view import PassView, ServiceContext, TaskInfo
from controlplane.state import ClusterSnapshot


def plan(snapshot: ClusterSnapshot, *, now: float, config: ReconcilerConfig) -> Plan:
    view = PassView(snapshot, now=now, config=config)
    out = PlanBuilder(view)
    placement = Placement(view)
    orphans: list[TaskInfo] = []
    for name, found in view.by_service.items():
        if name not in snapshot.services:
            orphans.extend(found)
    for name in sorted(snapshot.services):
        ctx = ServiceContext(snapshot.services[name])
        tasks: list[TaskInfo] = []
        for info in view.by_service.get(name, []):
            owner = info.task.service_id
            (tasks if not owner or owner == ctx.record.id else orphans).append(info)
        if ctx.spec.mode is ServiceMode.GLOBAL:
            reconcile_global(ctx, tasks, out=out, nodes=placement)
        else:
            reconcile_replicated(ctx, tasks, out=out)
    retire_orphans(orphans, out=out)
    delete_dangling_statuses(out)
    return placement.resolve(out, config=config)
