"""A cluster in a dict, for planner tests: snapshots as the mirror makes them, plans
applied with the applier's own guards, and agents played by hand.

`World.step()` is one reconcile pass (plan, then apply); `World.agents()` makes every up
node's agent act on its tasks at once (start what should run, stop what should not).
Time moves only when a test moves `world.now`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controlplane import keys
from controlplane.api.control.services import next_version, rollback_version
from controlplane.models import (
    Availability,
    NodeInfo,
    NodeSpec,
    ServiceSpec,
    Task,
    TaskState,
    TaskStatus,
)
from controlplane.models.base import Document
from controlplane.models.service import ServiceRecord
from controlplane.models.task import DesiredState
from controlplane.reconciler import CreateTask, Plan, ReconcilerConfig, plan
from controlplane.reconciler.applier import txn_parts
from controlplane.state import ClusterSnapshot
from controlplane.state.contents import ClusterContents
from discovery import Put

GIB = 1024**3
CPU = 1_000_000_000


class World:
    def __init__(self, *, now: float = 1000.0, **config: Any) -> None:
        self.now = now
        self.config = ReconcilerConfig(**{"node_grace": 10.0, **config})
        self.revision = 0
        self.kv: dict[str, tuple[bytes, int]] = {}
        self.contents = ClusterContents()
        self.watching_since = now
        self.conflicts = 0

    # --- the store ----------------------------------------------------------------------
    def put(self, key: str, value: Document | bytes) -> int:
        raw = value.dump() if isinstance(value, Document) else value
        self.revision += 1
        self.kv[key] = (raw, self.revision)
        self.contents.put(key, raw, self.revision)
        return self.revision

    def delete(self, key: str) -> None:
        if key in self.kv:
            self.revision += 1
            del self.kv[key]
            self.contents.delete(key, now=self.now, revision=self.revision)

    def mod_revision(self, key: str) -> int:
        return self.kv[key][1] if key in self.kv else 0

    # --- the reconciler -----------------------------------------------------------------
    def snapshot(self) -> ClusterSnapshot:
        return self.contents.snapshot(revision=self.revision, watching_since=self.watching_since)

    def plan(self) -> Plan:
        return plan(self.snapshot(), now=self.now, config=self.config)

    def apply(self, decided: Plan) -> None:
        """Each op as one transaction, with its guards, like the applier."""
        for op in decided.ops:
            compares, writes = txn_parts(op)
            if any(self.mod_revision(c.key) != c.mod_revision for c in compares):
                self.conflicts += 1
                continue
            self.revision += 1
            for write in writes:
                if isinstance(write, Put):
                    self.kv[write.key] = (write.value, self.revision)
                    self.contents.put(write.key, write.value, self.revision)
                elif write.key in self.kv:
                    del self.kv[write.key]
                    self.contents.delete(write.key, now=self.now, revision=self.revision)

    def step(self) -> Plan:
        decided = self.plan()
        self.apply(decided)
        return decided

    def roll(
        self, service: str = "web", *, failing: Iterable[str] = (), passes: int = 40
    ) -> list[tuple[str, list[int]]]:
        """Reconcile and run agents, one second apart, for a rolling update (or rollback):
        each batch's slots, with the update state the pass that started it wrote."""
        batches: list[tuple[str, list[int]]] = []
        for _ in range(passes):
            decided = self.step()
            batch = [
                op.task.slot or 0
                for op in decided.ops
                if isinstance(op, CreateTask) and op.reason == "update"
            ]
            if batch:
                batches.append((self.record(service).update_state, sorted(batch)))
            self.agents(failing_images=failing)
            self.now += 1
        return batches

    def settle(self, *, passes: int = 20) -> None:
        """Reconcile and let the agents act until nothing changes."""
        for _ in range(passes):
            decided = self.step()
            acted = self.agents()
            if not decided.ops and not acted:
                return
        raise AssertionError("the cluster did not settle")

    # --- nodes ----------------------------------------------------------------------------
    def add_node(
        self,
        node_id: str,
        *,
        memory: int = 8 * GIB,
        cpus: int = 4,
        labels: dict[str, str] | None = None,
        availability: Availability = Availability.ACTIVE,
    ) -> None:
        spec = NodeSpec(id=node_id, availability=availability, labels=labels or {})
        self.put(keys.node_spec(node_id), spec)
        self.heartbeat(node_id, memory=memory, cpus=cpus)

    def heartbeat(self, node_id: str, *, memory: int = 8 * GIB, cpus: int = 4) -> None:
        info = NodeInfo(
            id=node_id,
            hostname=f"host-{node_id}",
            addr="10.0.0.1",
            nano_cpus=cpus * CPU,
            memory_bytes=memory,
        )
        self.put(keys.node(node_id), info)

    def node_down(self, node_id: str) -> None:
        self.delete(keys.node(node_id))

    def set_availability(self, node_id: str, availability: Availability) -> None:
        spec = self.contents.node_specs[node_id]
        self.put(keys.node_spec(node_id), spec.model_copy(update={"availability": availability}))

    # --- services (what the API writes) ------------------------------------------------
    def create_service(self, name: str, **spec: Any) -> ServiceRecord:
        record = ServiceRecord(
            id=f"svc-{name}",
            spec=ServiceSpec(name=name, **{"image": "nginx:1", **spec}),
            created=self.now,
            updated=self.now,
        )
        self.put(keys.service(name), record)
        return record

    def update_service(self, name: str, **changes: Any) -> ServiceRecord:
        """A new spec version, as `POST /services/{name}/update` writes it."""
        record = self.record(name)
        spec = ServiceSpec.model_validate({**record.spec.model_dump(), **changes})
        new = next_version(record, spec, now=self.now)
        self.put(keys.service(name), new)
        return new

    def rollback_service(self, name: str) -> ServiceRecord:
        """The previous spec back, as `POST /services/{name}/rollback` writes it."""
        record = self.record(name)
        assert record.previous_spec is not None, f"{name} has no previous spec"
        new = rollback_version(record, record.previous_spec, now=self.now)
        self.put(keys.service(name), new)
        return new

    def record(self, name: str) -> ServiceRecord:
        return self.contents.services[name].record

    # --- agents ---------------------------------------------------------------------------
    def report(
        self,
        task_id: str,
        state: TaskState,
        *,
        exit_code: int | None = None,
        started_at: float | None = None,
    ) -> None:
        status = TaskStatus(
            task_id=task_id,
            state=state,
            exit_code=exit_code,
            timestamp=self.now,
            started_at=started_at if started_at is not None else self.now,
            finished_at=self.now if state.terminal else None,
        )
        self.put(keys.status(task_id), status)

    def agents(self, *, failing_images: Iterable[str] = ()) -> bool:
        """Every up node's agent acts once; True when any status changed."""
        failing = set(failing_images)
        acted = False
        for entry in list(self.contents.tasks.values()):
            task = entry.task
            if not task.node_id or task.node_id not in self.contents.nodes:
                continue
            state = self.state(task.id)
            if state.terminal:
                continue
            if task.desired_state is DesiredState.SHUTDOWN:
                self.report(task.id, TaskState.SHUTDOWN)
                acted = True
            elif task.spec.image in failing:
                self.report(task.id, TaskState.FAILED, exit_code=1)
                acted = True
            elif state is not TaskState.RUNNING:
                self.report(task.id, TaskState.RUNNING)
                acted = True
        return acted

    # --- looking --------------------------------------------------------------------------
    def state(self, task_id: str) -> TaskState:
        status = self.contents.statuses.get(task_id)
        if status is not None:
            return status.status.state
        entry = self.contents.tasks[task_id]
        return TaskState.PENDING if entry.pending else TaskState.ASSIGNED

    def tasks(self, service: str) -> list[Task]:
        found = [e.task for e in self.contents.tasks.values() if e.task.service == service]
        return sorted(found, key=lambda t: (t.slot or 0, t.node_id, t.created, t.id))

    def running(self, service: str) -> list[Task]:
        return [
            task
            for task in self.tasks(service)
            if task.desired_state is DesiredState.RUNNING
            and self.state(task.id) is TaskState.RUNNING
        ]

    def live(self, service: str) -> list[Task]:
        return [t for t in self.tasks(service) if t.desired_state is DesiredState.RUNNING]
