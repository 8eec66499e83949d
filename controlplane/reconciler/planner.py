"""The planner: `plan(snapshot, *, now, config, services=None) -> Plan`, a pure function.

No store, no clock, no randomness: the same snapshot, time, config and services give
the same plan (task ids included; see `ids`). One pass:

1. classify every task of the services in scope once (`view`);
2. for each service, by name: its tasks go through `replicated` or `global_mode`;
   tasks of a removed (or removed and re-created) service are retired (`removed`);
3. statuses whose task is gone are deleted (`removed`), on a full pass only;
4. new and pending tasks are placed with one scheduler call (`placement`), against
   node views built from every task of the cluster.

`services` narrows the pass to those service names (None: every service, and every
task whatever its service). A service's decisions depend only on its record, its own
tasks and their statuses, and the nodes (the scheduler's node views count every task),
so planning a service alone gives the ops a full pass would give for it; the loop uses
that to re-plan only the services whose inputs changed (`loop`).

The plan's ops are in decision order; `next_wakeup` is the earliest time something not
yet due becomes due (for the services planned). Cost: linear in the tasks of the
services in scope, plus the scheduler's share.
"""

from __future__ import annotations

from collections.abc import Collection

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


def plan(
    snapshot: ClusterSnapshot,
    *,
    now: float,
    config: ReconcilerConfig,
    services: Collection[str] | None = None,
) -> Plan:
    scope = snapshot if services is None else snapshot.narrowed(services)
    view = PassView(scope, now=now, config=config)
    out = PlanBuilder(view)
    placement = Placement(view, cluster=snapshot)
    orphans: list[TaskInfo] = []
    for name, found in view.by_service.items():
        if name not in snapshot.services:
            orphans.extend(found)
    names = snapshot.services if services is None else set(services) & set(snapshot.services)
    for name in sorted(names):
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
    if services is None:
        delete_dangling_statuses(out)
    return placement.resolve(out, config=config)
