"""Placement: the one module that speaks to the scheduler.

The scheduler (`scheduler.Pipeline`) is pure: it takes placement requests and node views
and answers with assignments and, for what it could not place, a sentence. This module
builds those inputs from a pass's view and turns the answers into plan ops:

- one `NodeView` per known node: up = its heartbeat key exists; availability, role and
  labels from its node spec; platform, capacity and engine labels from its heartbeat;
  and what its tasks already hold: every placed task that has not ended counts (a task
  being stopped still holds its resources and host ports until it has stopped), with
  its service's reservations;
- one `PlacementRequest` per task to place, from its service's spec: reservations,
  constraints (a constraint written `affinity:...` is passed as an affinity), placement
  preferences, host-mode published ports, the per-node cap, platforms;
- one scheduler call per pass for every request, pending tasks first (oldest first),
  then new tasks in the order they were decided, so that later requests see earlier
  placements;
- a new task that fits becomes a `CreateTask` on its node with status `assigned`; one
  that does not becomes a `CreateTask` under `pending/` with status `pending` and the
  scheduler's explanation (a global service's task keeps its node in `pinned_node`, and
  is only ever placed there); a pending task that fits now becomes a `PlacePending`,
  and one that still does not stays as it is.
"""

from __future__ import annotations

from collections import Counter
from functools import cached_property, lru_cache

from controlplane.models import Task, TaskState, TaskStatus
from controlplane.models.node import Availability, NodeRole
from controlplane.models.service import PublishMode, ServiceSpec
from controlplane.reconciler.builder import NewTask, PendingPlacement, PlanBuilder
from controlplane.reconciler.config import ReconcilerConfig
from controlplane.reconciler.plan import CreateTask, PlacePending, Plan, PlanOp
from controlplane.reconciler.view import FAILURES, PassView, ServiceContext
from controlplane.state import ClusterSnapshot
from scheduler import (
    ConstraintError,
    NodeView,
    Pipeline,
    PlacementRequest,
    Platform,
    PortRequest,
    Resources,
    load_pipeline,
)
from scheduler.filters import ConstraintFilter, PlatformFilter
from scheduler.nodes import Availability as ViewAvailability
from scheduler.nodes import Role

_ROLES: dict[NodeRole, Role] = {NodeRole.WORKER: "worker", NodeRole.MANAGER: "manager"}
_AVAILABILITY: dict[Availability, ViewAvailability] = {
    Availability.ACTIVE: "active",
    Availability.PAUSE: "pause",
    Availability.DRAIN: "drain",
}
_AFFINITY = "affinity:"
_STATIC_CHECKS = (ConstraintFilter(), PlatformFilter())


@lru_cache(maxsize=8)
def _pipeline(filters: tuple[str, ...] | None, strategy: str, seed: int) -> Pipeline:
    return load_pipeline(filters=filters, strategy=strategy, seed=seed)


def reservations(spec: ServiceSpec) -> Resources:
    return Resources(
        nano_cpus=spec.reservations.nano_cpus, memory_bytes=spec.reservations.memory_bytes
    )


def _platform(text: str) -> Platform:
    os, _, rest = text.partition("/")
    return Platform(os, rest.partition("/")[0])


def request_for(
    spec: ServiceSpec, *, task_id: str, slot: int | None, node_id: str | None = None
) -> PlacementRequest:
    rules = spec.placement.constraints
    return PlacementRequest(
        service=spec.name,
        slot=slot,
        task_id=task_id,
        image=spec.image,
        resources=reservations(spec),
        constraints=tuple(rule for rule in rules if not rule.startswith(_AFFINITY)),
        affinities=tuple(rule for rule in rules if rule.startswith(_AFFINITY)),
        preferences=tuple(spec.placement.preferences),
        host_ports=tuple(
            PortRequest(port.protocol, port.published)
            for port in spec.ports
            if port.mode is PublishMode.HOST and port.published is not None
        ),
        max_replicas_per_node=spec.placement.max_replicas_per_node,
        platforms=tuple(_platform(text) for text in spec.placement.platforms),
        node_id=node_id,
    )


def node_views(view: PassView, cluster: ClusterSnapshot | None = None) -> dict[str, NodeView]:
    """The scheduler's nodes, holding every task of `cluster` (default: the view's)."""
    snapshot = cluster if cluster is not None else view.snapshot
    views: dict[str, NodeView] = {}
    for node_id in view.node_ids():
        info = snapshot.nodes.get(node_id)
        spec = snapshot.node_specs.get(node_id)
        views[node_id] = NodeView(
            id=node_id,
            hostname=info.hostname if info is not None else "",
            addr=info.addr if info is not None else "",
            role=_ROLES[spec.role] if spec is not None else "worker",
            availability=_AVAILABILITY[view.availability(node_id)],
            ready=info is not None,
            labels=dict(spec.labels) if spec is not None else {},
            engine_labels=dict(info.engine_labels) if info is not None else {},
            platform=Platform(info.os, info.arch) if info is not None else Platform("", ""),
            capacity=(
                Resources(nano_cpus=info.nano_cpus, memory_bytes=info.memory_bytes)
                if info is not None
                else Resources()
            ),
        )
    held = {name: reservations(stored.record.spec) for name, stored in snapshot.services.items()}
    failures: dict[str, Counter[str]] = {}
    statuses = snapshot.statuses
    for stored in snapshot.tasks.values():
        task = stored.task
        node = views.get(task.node_id)
        if node is None:
            continue
        found = statuses.get(task.id)
        state = found.status.state if found is not None else TaskState.ASSIGNED
        service = task.service
        if state in FAILURES:
            failures.setdefault(task.node_id, Counter())[service] += 1
        if state.terminal:
            continue
        node.reserved = node.reserved + held.get(service, Resources())
        node.tasks_by_service[service] = node.tasks_by_service.get(service, 0) + 1
        node.total_tasks += 1
        node.images.add(task.spec.image)
        for port in task.spec.ports:
            if port.mode is PublishMode.HOST and port.published is not None:
                node.host_ports_in_use.add((port.protocol, port.published))
    for node_id, counts in failures.items():
        views[node_id].recent_failures = dict(counts)
    return views


class Placement:
    """The scheduler's view of one pass, and the step that fills in a plan's new tasks."""

    def __init__(self, view: PassView, *, cluster: ClusterSnapshot | None = None) -> None:
        self.view = view
        self._cluster = cluster
        self._requests: dict[str, PlacementRequest] = {}

    @cached_property
    def nodes(self) -> dict[str, NodeView]:
        """Built on first use: a pass with nothing to place never builds them. They count
        every task of the cluster, also on a pass that plans only some services."""
        return node_views(self.view, self._cluster)

    def matches(self, ctx: ServiceContext, node_id: str) -> bool:
        """The node satisfies the service's constraints and platforms (not capacity).

        A constraint that does not parse counts as satisfied here: the scheduler refuses
        new tasks with the parse error as the reason, and running ones are left alone.
        """
        node = self.nodes.get(node_id)
        if node is None:
            return False
        request = self._requests.get(ctx.name)
        if request is None:
            request = self._requests[ctx.name] = request_for(ctx.spec, task_id="", slot=None)
        try:
            return all(check.check(request, node) for check in _STATIC_CHECKS)
        except ConstraintError:
            return True

    def resolve(self, out: PlanBuilder, *, config: ReconcilerConfig) -> Plan:
        pending = sorted(
            (entry for entry in out.entries if isinstance(entry, PendingPlacement)),
            key=lambda entry: (entry.info.created, entry.info.id),
        )
        new = [entry for entry in out.entries if isinstance(entry, NewTask)]
        requests = [
            request_for(
                entry.ctx.spec,
                task_id=entry.info.id,
                slot=entry.info.task.slot,
                node_id=entry.info.task.pinned_node or None,
            )
            for entry in pending
        ] + [
            request_for(
                entry.ctx.spec, task_id=entry.task_id, slot=entry.slot, node_id=entry.node_id
            )
            for entry in new
        ]
        placed: dict[str, str] = {}
        why: dict[str, str] = {}
        if requests:
            pipeline = _pipeline(config.filters, config.strategy, config.seed)
            result = pipeline.place(requests, self.nodes.values())
            placed = result.assignments
            why = {request.key: reason for request, reason in result.unplaced}

        now = self.view.now
        ops: list[PlanOp] = []
        for entry in out.entries:
            if isinstance(entry, PendingPlacement):
                node_id = placed.get(entry.info.id)
                if node_id is not None:
                    ops.append(_place_pending(entry, node_id=node_id, now=now))
            elif isinstance(entry, NewTask):
                ops.append(_create(entry, node_id=placed.get(entry.task_id), why=why, now=now))
            else:
                ops.append(entry)
        return Plan(
            ops=tuple(ops), next_wakeup=out.next_wakeup, revision=self.view.snapshot.revision
        )


def _create(entry: NewTask, *, node_id: str | None, why: dict[str, str], now: float) -> CreateTask:
    record = entry.ctx.record
    task = Task(
        id=entry.task_id,
        service=record.spec.name,
        service_id=record.id,
        slot=entry.slot,
        node_id=node_id or "",
        pinned_node="" if node_id else entry.node_id or "",  # a global task left pending
        spec_version=record.spec_version,
        spec=entry.ctx.task_spec,
        created=now,
    )
    if node_id is not None:
        status = TaskStatus(
            task_id=task.id,
            state=TaskState.ASSIGNED,
            message=f"assigned to node {node_id}",
            timestamp=now,
        )
    else:
        reason = why.get(entry.task_id, "no suitable node")
        waits = f"node {entry.node_id} cannot take it" if entry.node_id else "no suitable node"
        status = TaskStatus(
            task_id=task.id,
            state=TaskState.PENDING,
            message=f"{waits} ({reason})",
            timestamp=now,
        )
    return CreateTask(task=task, status=status, reason=entry.reason)


def _place_pending(entry: PendingPlacement, *, node_id: str, now: float) -> PlacePending:
    task = entry.info.task.model_copy(update={"node_id": node_id, "pinned_node": ""})
    status = TaskStatus(
        task_id=task.id,
        state=TaskState.ASSIGNED,
        message=f"assigned to node {node_id}",
        timestamp=now,
    )
    return PlacePending(task=task, pending_revision=entry.info.stored.mod_revision, status=status)
