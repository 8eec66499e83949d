"""The planner as a pure function: one declarative cluster, one `plan()` call, its ops.

Each row is the cluster at one instant (nodes, services, tasks and what their agents
reported), the time `now`, and the plan expected, summed up as a set of tuples:

    ("create", service, slot, node, reason)  a new task (slot None: a global one)
    ("pending", service, slot, explanation)  a new task no node fits, with the scheduler's why
    ("place", task, node)                    a pending task placed now
    ("shutdown", task, reason)               desired state `shutdown`
    ("orphan", task)                         a lost task: shutdown, status `orphaned`
    ("delete", task, reason)                 the task and its status deleted
    ("state", service, update_state)         the record's rolling-update state
    ("rollback", service, image)             the record back to its previous spec
    ("delete status", task)                  a status whose task is gone

Rows run with a node grace period of 10 s and five tasks kept per slot; a row may also
say when the planner asks to be woken (`wakeup`). Every row also checks what holds for
any plan: a new task has a new id and its service's current spec, and no slot is left
with two tasks meant to run (a start-first update excepted, which does that on purpose).
The snapshots are built with the scenario tests' `World`, so they are what the mirror
would hold after those writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from controlplane import keys
from controlplane.models import Availability, Task, TaskState, TaskStatus
from controlplane.models.service import UpdateOrder
from controlplane.models.task import DesiredState
from controlplane.reconciler import (
    CreateTask,
    DeleteStatus,
    DeleteTask,
    PlacePending,
    Plan,
    ReconcilerConfig,
    ShutdownTask,
    UpdateServiceRecord,
    plan,
)
from controlplane.reconciler.taskspec import task_spec_for
from controlplane.state import ClusterSnapshot
from tests.reconciler.world import GIB, World

NOW = 1000.0
CONFIG = ReconcilerConfig(node_grace=10.0, history_limit=5)
Op = tuple[object, ...]
UNCHECKED = "unchecked"  # a row that does not say when the planner wants to look again


# --- the declarative rows ---------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    id: str
    down_since: float | None = None  # None: up (its heartbeat key is there)
    availability: str = "active"
    labels: Mapping[str, str] = field(default_factory=dict)
    memory_gib: int = 8


@dataclass(frozen=True)
class Service:
    name: str
    spec: Mapping[str, Any]  # ServiceSpec fields; the image defaults to nginx:1
    #: Fields of the previous spec that differ: the service was created with them and
    #: updated to `spec`, so its current spec is version 2 (or `version`).
    previous: Mapping[str, Any] | None = None
    version: int | None = None
    state: str = ""  # the record's update_state


def svc(
    name: str,
    *,
    previous: Mapping[str, Any] | None = None,
    version: int | None = None,
    state: str = "",
    **spec: Any,
) -> Service:
    return Service(name, spec, previous=previous, version=version, state=state)


@dataclass(frozen=True)
class T:
    """A task and its agent's last report."""

    id: str
    service: str
    slot: int | None = None  # None: a global service's task
    node: str = ""  # "": pending, no node yet
    state: str | None = "running"  # None: nothing reported yet (assigned / pending)
    at: float = 900.0  # when `state` was reported: running since, or ended at
    exit: int | None = None
    started: float | None = None  # for a task that ended: when it had started running
    created: float | None = None  # None: `at`
    desired: str = "running"
    v: int | None = None  # spec version (None: the current one; older: the previous spec)
    image: str | None = None  # an image other than its version's spec's


@dataclass(frozen=True)
class Case:
    id: str
    expect: set[Op]
    nodes: Sequence[Node] = ()
    services: Sequence[Service] = ()
    tasks: Sequence[T] = ()
    now: float = NOW
    wakeup: float | str | None = UNCHECKED


def nodes(*ids: str, **fields: Any) -> list[Node]:
    return [Node(node_id, **fields) for node_id in ids]


def running(service: str, placed: Mapping[int, str], *, v: int | None = None) -> list[T]:
    """Task t<slot> of `service` running on the given node of each slot since 900."""
    return [T(f"t{slot}", service, slot, node, v=v) for slot, node in placed.items()]


# --- building the snapshot, summing up the plan ---------------------------------------
def snapshot_of(case: Case) -> ClusterSnapshot:
    world = World(now=case.now)
    for node in case.nodes:
        world.add_node(
            node.id,
            memory=node.memory_gib * GIB,
            labels=dict(node.labels),
            availability=Availability(node.availability),
        )
    for service in case.services:
        if service.previous is None:
            world.create_service(service.name, **service.spec)
        else:
            world.create_service(service.name, **{**service.spec, **service.previous})
            world.update_service(service.name, **service.spec)
        changes: dict[str, Any] = {"update_state": service.state}
        if service.version is not None:
            changes["spec_version"] = service.version
        world.put(keys.service(service.name), world.record(service.name).model_copy(update=changes))
    for row in case.tasks:
        record = world.record(row.service)
        version = row.v if row.v is not None else record.spec_version
        spec = record.spec if version == record.spec_version else record.previous_spec
        assert spec is not None, f"task {row.id}: its service has no previous spec"
        if row.image is not None:
            spec = spec.model_copy(update={"image": row.image})
        task = Task(
            id=row.id,
            service=row.service,
            service_id=record.id,
            slot=row.slot,
            node_id=row.node,
            spec_version=version,
            spec=task_spec_for(spec),
            desired_state=DesiredState(row.desired),
            created=row.created if row.created is not None else row.at,
        )
        world.put(keys.task(row.node, row.id) if row.node else keys.pending(row.id), task)
        if row.state is not None:
            state = TaskState(row.state)
            began = row.started
            if began is None and state in (TaskState.RUNNING, TaskState.STARTING):
                began = row.at
            status = TaskStatus(
                task_id=row.id,
                state=state,
                exit_code=row.exit,
                timestamp=row.at,
                started_at=began,
                running_at=began if state is not TaskState.STARTING else None,
                finished_at=row.at if state.terminal else None,
            )
            world.put(keys.status(row.id), status)
    for node in case.nodes:
        if node.down_since is not None:
            world.now = node.down_since
            world.node_down(node.id)
    world.now = case.now
    return world.snapshot()


def summary(decided: Plan, snapshot: ClusterSnapshot) -> set[Op]:
    found: set[Op] = set()
    for op in decided.ops:
        if isinstance(op, CreateTask):
            task = op.task
            if task.node_id:
                found.add(("create", task.service, task.slot, task.node_id, op.reason))
            else:
                found.add(("pending", task.service, task.slot, op.status.message))
        elif isinstance(op, PlacePending):
            found.add(("place", op.task.id, op.task.node_id))
        elif isinstance(op, ShutdownTask):
            if op.status is not None and op.status.state is TaskState.ORPHANED:
                found.add(("orphan", op.task.id))
            else:
                found.add(("shutdown", op.task.id, op.reason))
        elif isinstance(op, DeleteTask):
            found.add(("delete", op.task_id, op.reason))
        elif isinstance(op, DeleteStatus):
            found.add(("delete status", op.task_id))
        elif isinstance(op, UpdateServiceRecord):
            name = op.record.spec.name
            if op.record.spec_version != snapshot.services[name].record.spec_version:
                found.add(("rollback", name, op.record.spec.image))
            else:
                found.add(("state", name, op.record.update_state))
    return found


def slot_of(task: Task) -> int | str:
    """The slot number, or a global task's node."""
    return task.slot if task.slot is not None else task.node_id


def check_invariants(decided: Plan, snapshot: ClusterSnapshot) -> None:
    """What every plan must respect, whatever the row."""
    stopped = {op.task.id for op in decided.ops if isinstance(op, ShutdownTask)}
    stopped |= {op.task_id for op in decided.ops if isinstance(op, DeleteTask)}
    meant_to_run: Counter[tuple[str, int | str]] = Counter()
    for stored in snapshot.tasks.values():
        task = stored.task
        status = snapshot.statuses.get(task.id)
        ended = status is not None and status.status.state.terminal
        if task.desired_state is DesiredState.RUNNING and not ended and task.id not in stopped:
            meant_to_run[(task.service, slot_of(task))] += 1
    for op in decided.ops:
        if not isinstance(op, CreateTask):
            continue
        task = op.task
        record = snapshot.services[task.service].record
        assert task.id not in snapshot.tasks, "a restart or replacement is a new task"
        assert task.spec == task_spec_for(record.spec), "a new task has the current spec"
        assert task.spec_version == record.spec_version
        meant_to_run[(task.service, slot_of(task))] += 1
    for (service, where), count in meant_to_run.items():
        order = snapshot.services[service].record.spec.update_config.order
        if order is not UpdateOrder.START_FIRST:
            assert count <= 1, f"{service} slot {where} would run {count} tasks"


def run(case: Case) -> None:
    snapshot = snapshot_of(case)
    decided = plan(snapshot, now=case.now, config=CONFIG)
    assert summary(decided, snapshot) == case.expect
    if case.wakeup != UNCHECKED:
        assert decided.next_wakeup == case.wakeup
    check_invariants(decided, snapshot)


def params(cases: Iterable[Case]) -> list[Any]:
    return [pytest.param(case, id=case.id) for case in cases]


# --- replicated and global services, scaling ---------------------------------------------
N3 = nodes("n1", "n2", "n3")
AGENT = svc("agent", mode="global")

SLOTS = [
    Case(
        "replicated: a new service gets slots 1..N, spread",
        nodes=N3,
        services=[svc("web", replicas=3)],
        expect={
            ("create", "web", 1, "n1", "scale up"),
            ("create", "web", 2, "n2", "scale up"),
            ("create", "web", 3, "n3", "scale up"),
        },
    ),
    Case(
        "replicated: nothing to do when every slot runs",
        nodes=N3,
        services=[svc("web", replicas=3)],
        tasks=running("web", {1: "n1", 2: "n2", 3: "n3"}),
        expect=set(),
        wakeup=None,
    ),
    Case(
        "replicated: a missing slot in the middle is created",
        nodes=N3,
        services=[svc("web", replicas=3)],
        tasks=running("web", {1: "n1", 3: "n3"}),
        expect={("create", "web", 2, "n2", "scale up")},
    ),
    Case(
        "replicated: a finished task's slot gets a new task (condition any)",
        nodes=nodes("n1", "n2"),
        services=[svc("web", replicas=2, restart_policy={"condition": "any", "delay": 0})],
        tasks=[T("t1", "web", 1, "n1", "complete", at=990, exit=0), T("t2", "web", 2, "n2")],
        expect={("create", "web", 1, "n1", "restart")},
    ),
    Case(
        "global: one task per eligible node",
        nodes=N3,
        services=[AGENT],
        expect={
            ("create", "agent", None, "n1", "node joined"),
            ("create", "agent", None, "n2", "node joined"),
            ("create", "agent", None, "n3", "node joined"),
        },
    ),
    Case(
        "global: a node joining gets one",
        nodes=N3,
        services=[AGENT],
        tasks=[T("a1", "agent", node="n1"), T("a2", "agent", node="n2")],
        expect={("create", "agent", None, "n3", "node joined")},
    ),
    Case(
        "global: nothing for a node failing the constraint, nor a paused or drained one",
        nodes=[
            Node("n1", labels={"zone": "a"}),
            Node("n2", labels={"zone": "b"}),
            Node("n3", labels={"zone": "a"}, availability="pause"),
            Node("n4", labels={"zone": "a"}, availability="drain"),
        ],
        services=[svc("agent", mode="global", placement={"constraints": ["node.labels.zone==a"]})],
        expect={("create", "agent", None, "n1", "node joined")},
    ),
    Case(
        "global: a node that stops matching the constraint has its task shut down",
        nodes=[Node("n1", labels={"gpu": "yes"}), Node("n2")],
        services=[svc("agent", mode="global", placement={"constraints": ["node.labels.gpu==yes"]})],
        tasks=[T("a1", "agent", node="n1"), T("a2", "agent", node="n2")],
        expect={("shutdown", "a2", "node no longer matches")},
    ),
    Case(
        "global: a drained node has its task shut down, a paused one keeps it",
        nodes=[Node("n1", availability="drain"), Node("n2", availability="pause"), Node("n3")],
        services=[AGENT],
        tasks=[T("a1", "agent", node="n1"), T("a2", "agent", node="n2")],
        expect={
            ("shutdown", "a1", "node drained"),
            ("create", "agent", None, "n3", "node joined"),
        },
    ),
    Case(
        "global: a node that left the cluster has its task deleted",
        nodes=nodes("n1"),
        services=[AGENT],
        tasks=[T("a1", "agent", node="n1"), T("a2", "agent", node="n2")],
        expect={("delete", "a2", "node removed")},
    ),
    Case(
        "scale up 2 -> 4: slots 3 and 4 are created, spread",
        nodes=nodes("n1", "n2"),
        services=[svc("web", replicas=4)],
        tasks=running("web", {1: "n1", 2: "n2"}),
        expect={
            ("create", "web", 3, "n1", "scale up"),
            ("create", "web", 4, "n2", "scale up"),
        },
    ),
    Case(
        "scale down 6 -> 3: the highest slots go when all run evenly spread",
        nodes=N3,
        services=[svc("web", replicas=3)],
        tasks=running("web", {1: "n1", 2: "n2", 3: "n3", 4: "n1", 5: "n2", 6: "n3"}),
        expect={
            ("shutdown", "t4", "scale down"),
            ("shutdown", "t5", "scale down"),
            ("shutdown", "t6", "scale down"),
        },
    ),
    Case(
        "scale down prefers a task that is not running yet over a higher slot",
        nodes=nodes("n1", "n2"),
        services=[svc("web", replicas=3)],
        tasks=[
            *running("web", {1: "n1", 3: "n1", 4: "n2"}),
            T("t2", "web", 2, "n2", state="starting"),
        ],
        expect={("shutdown", "t2", "scale down")},
    ),
    Case(
        "scale down prefers a pending task: deleted, nothing to stop",
        nodes=nodes("n1", "n2"),
        services=[svc("web", replicas=3)],
        tasks=[*running("web", {1: "n1", 3: "n1", 4: "n2"}), T("t2", "web", 2, state="pending")],
        expect={("delete", "t2", "scale down")},
    ),
    Case(
        "scale down: of several tasks not running, the highest slot goes",
        nodes=nodes("n1", "n2"),
        services=[svc("web", replicas=3, restart_policy={"delay": 30})],
        tasks=[
            *running("web", {1: "n1", 4: "n2"}),
            T("t2", "web", 2, "n2", state=None),
            T("t3", "web", 3, "n1", "failed", at=990, exit=1),
        ],
        expect={("delete", "t3", "scale down")},
    ),
    Case(
        "scale down then prefers the node with the most copies over the highest slot",
        nodes=nodes("n1", "n2"),
        services=[svc("web", replicas=3)],
        tasks=running("web", {1: "n1", 2: "n1", 3: "n1", 4: "n2"}),
        expect={("shutdown", "t3", "scale down")},
    ),
    Case(
        "scale down by two takes one copy at a time from the fullest node",
        nodes=nodes("n1", "n2"),
        services=[svc("web", replicas=3)],
        tasks=running("web", {1: "n1", 2: "n1", 3: "n1", 4: "n2", 5: "n2"}),
        expect={("shutdown", "t3", "scale down"), ("shutdown", "t5", "scale down")},
    ),
    Case(
        "scale down: a slot already stopping is not counted, its stopped task is deleted",
        nodes=nodes("n1", "n2"),
        services=[svc("web", replicas=2)],
        tasks=[
            *running("web", {1: "n1", 2: "n2"}),
            T("t3", "web", 3, "n1", "shutdown", at=990, desired="shutdown"),
        ],
        expect={("delete", "t3", "slot removed")},
    ),
]


@pytest.mark.parametrize("case", params(SLOTS))
def test_slots_and_scaling(case: Case) -> None:
    run(case)


# --- restart policy and history ---------------------------------------------------------
def job(**policy: Any) -> Service:
    return svc("job", replicas=1, restart_policy=policy)


def failures(*ended_at: float, code: int = 1) -> list[T]:
    """Slot 1's tasks t1, t2, ... of `job`, each ended (exit `code`) at the time given."""
    state = "complete" if code == 0 else "failed"
    return [T(f"t{n}", "job", 1, "n1", state, at=at, exit=code) for n, at in enumerate(ended_at, 1)]


N1 = nodes("n1")

RESTARTS = [
    Case(
        "restart condition any: exit 0 is restarted, as a new task in the same slot",
        nodes=N1,
        services=[job(condition="any", delay=0)],
        tasks=failures(990, code=0),
        expect={("create", "job", 1, "n1", "restart")},
    ),
    Case(
        "restart condition on-failure: exit 0 is not restarted",
        nodes=N1,
        services=[job(condition="on-failure", delay=0)],
        tasks=failures(990, code=0),
        expect=set(),
        wakeup=None,
    ),
    Case(
        "restart condition on-failure: exit 1 is restarted",
        nodes=N1,
        services=[job(condition="on-failure", delay=0)],
        tasks=failures(990),
        expect={("create", "job", 1, "n1", "restart")},
    ),
    Case(
        "restart condition none: exit 1 is not restarted",
        nodes=N1,
        services=[job(condition="none", delay=0)],
        tasks=failures(990),
        expect=set(),
        wakeup=None,
    ),
    Case(
        "restart delay: not restarted before it, woken when it ends",
        nodes=N1,
        services=[job(delay=10)],
        tasks=failures(995),
        expect=set(),
        wakeup=1005,
    ),
    Case(
        "restart delay: restarted once it has passed",
        nodes=N1,
        services=[job(delay=10)],
        tasks=failures(990),
        expect={("create", "job", 1, "n1", "restart")},
    ),
    Case(
        "max_attempts 2: the second failure is restarted",
        nodes=N1,
        services=[job(delay=0, max_attempts=2)],
        tasks=failures(960, 980),
        expect={("create", "job", 1, "n1", "restart")},
    ),
    Case(
        "max_attempts 2: after the third failure the slot stays failed",
        nodes=N1,
        services=[job(delay=0, max_attempts=2)],
        tasks=failures(960, 970, 980),
        expect=set(),
        wakeup=None,
    ),
    Case(
        "max_attempts 2 within a 60 s window: an attempt before the window does not count",
        nodes=N1,
        services=[job(delay=0, max_attempts=2, window=60)],
        tasks=failures(900, 960, 980),
        expect={("create", "job", 1, "n1", "restart")},
    ),
    Case(
        "max_attempts 2 within a 60 s window: three inside wait for the oldest to leave it",
        nodes=N1,
        services=[job(delay=0, max_attempts=2, window=60)],
        tasks=failures(950, 960, 980),
        expect=set(),
        wakeup=950 + 60,
    ),
    Case(
        "max_attempts 1: a task stopped without being asked is not an attempt",
        nodes=N1,
        services=[job(delay=0, max_attempts=1)],
        tasks=[T("t1", "job", 1, "n1", "shutdown", at=990)],
        expect={("create", "job", 1, "n1", "restart")},
    ),
    Case(
        "history: a restart of a slot with 5 tasks deletes the oldest (5 kept, new included)",
        nodes=N1,
        services=[job(delay=0)],
        tasks=failures(950, 960, 970, 980, 990),
        expect={("create", "job", 1, "n1", "restart"), ("delete", "t1", "history")},
    ),
    Case(
        "history: a slot with 6 tasks, the newest running, loses its oldest",
        nodes=N1,
        services=[job(delay=0)],
        tasks=[*failures(950, 960, 970, 980, 990), T("t6", "job", 1, "n1", at=995)],
        expect={("delete", "t1", "history")},
    ),
    Case(
        "history: a slot with 5 tasks, the newest running, keeps them all",
        nodes=N1,
        services=[job(delay=0)],
        tasks=[*failures(960, 970, 980, 990), T("t5", "job", 1, "n1", at=995)],
        expect=set(),
    ),
]


@pytest.mark.parametrize("case", params(RESTARTS))
def test_restart_policy_and_history(case: Case) -> None:
    run(case)


# --- nodes down, drained, paused; pending tasks ------------------------------------------
WEB2 = svc("web", replicas=2)

NODES = [
    Case(
        "node down within the grace period: nothing moves, woken when it ends",
        nodes=[Node("n1", down_since=995), Node("n2"), Node("n3")],
        services=[WEB2],
        tasks=running("web", {1: "n1", 2: "n2"}),
        expect=set(),
        wakeup=1005,
    ),
    Case(
        "node down past the grace period: its task is orphaned and replaced elsewhere",
        nodes=[Node("n1", down_since=990), Node("n2"), Node("n3")],
        services=[WEB2],
        tasks=running("web", {1: "n1", 2: "n2"}),
        expect={("orphan", "t1"), ("create", "web", 1, "n3", "node down")},
    ),
    Case(
        "node down: a task that had already ended is not lost, its restart goes elsewhere",
        nodes=[Node("n1", down_since=990), Node("n2")],
        services=[svc("web", replicas=1, restart_policy={"delay": 0})],
        tasks=[T("t1", "web", 1, "n1", "failed", at=980, exit=1)],
        expect={("create", "web", 1, "n2", "restart")},
    ),
    Case(
        "node back: its orphaned task is deleted, the replacement stays",
        nodes=N3,
        services=[WEB2],
        tasks=[
            T("t1", "web", 1, "n1", "orphaned", at=990, desired="shutdown"),
            T("t3", "web", 1, "n3", at=991),
            T("t2", "web", 2, "n2"),
        ],
        expect={("delete", "t1", "node returned")},
    ),
    Case(
        "global node down past the grace period: orphaned, no elsewhere to go",
        nodes=[Node("n1", down_since=990), Node("n2")],
        services=[AGENT],
        tasks=[T("a1", "agent", node="n1"), T("a2", "agent", node="n2")],
        expect={("orphan", "a1")},
    ),
    Case(
        "global node back: its orphaned task is deleted and it gets a new one",
        nodes=nodes("n1", "n2"),
        services=[AGENT],
        tasks=[
            T("a1", "agent", node="n1", state="orphaned", at=990, desired="shutdown"),
            T("a2", "agent", node="n2"),
        ],
        expect={("delete", "a1", "node returned"), ("create", "agent", None, "n1", "node joined")},
    ),
    Case(
        "drain: the node's tasks are stopped and moved to the other nodes",
        nodes=[Node("n1", availability="drain"), Node("n2"), Node("n3")],
        services=[svc("web", replicas=3)],
        tasks=running("web", {1: "n1", 2: "n2", 3: "n1"}),
        expect={
            ("shutdown", "t1", "node drained"),
            ("shutdown", "t3", "node drained"),
            ("create", "web", 1, "n3", "node drained"),
            ("create", "web", 3, "n2", "node drained"),
        },
    ),
    Case(
        "pause: the node keeps its tasks",
        nodes=[Node("n1", availability="pause"), Node("n2")],
        services=[WEB2],
        tasks=running("web", {1: "n1", 2: "n2"}),
        expect=set(),
    ),
    Case(
        "pause: a scale-up places nothing on the paused node",
        nodes=[Node("n1", availability="pause"), Node("n2")],
        services=[svc("web", replicas=4)],
        tasks=running("web", {1: "n1", 2: "n2"}),
        expect={("create", "web", 3, "n2", "scale up"), ("create", "web", 4, "n2", "scale up")},
    ),
    Case(
        "pause: a restart goes to another node",
        nodes=[Node("n1", availability="pause"), Node("n2")],
        services=[svc("web", replicas=1, restart_policy={"delay": 0})],
        tasks=[T("t1", "web", 1, "n1", "failed", at=990, exit=1)],
        expect={("create", "web", 1, "n2", "restart")},
    ),
    Case(
        "pending: no node has the memory, the scheduler says so",
        nodes=[Node("small", memory_gib=1)],
        services=[svc("db", reservations={"memory_bytes": 4 * GIB})],
        expect={("pending", "db", 1, "no suitable node (1 node lacks 4 GiB memory)")},
    ),
    Case(
        "pending: no node matches the constraint, the scheduler names it",
        nodes=[Node("n1", labels={"zone": "a"}), Node("n2", labels={"zone": "b"})],
        services=[svc("db", placement={"constraints": ["node.labels.zone==c"]})],
        expect={
            ("pending", "db", 1, "no suitable node (2 nodes do not satisfy node.labels.zone==c)")
        },
    ),
    Case(
        "pending: every node drained, paused or down, the scheduler says which",
        nodes=[
            Node("n1", availability="drain"),
            Node("n2", availability="drain"),
            Node("n3", availability="pause"),
            Node("n4", down_since=999),
        ],
        services=[svc("db")],
        expect={
            (
                "pending",
                "db",
                1,
                "no suitable node (2 nodes not available (drained); "
                "1 node not available (down); 1 node not available (paused))",
            )
        },
    ),
    Case(
        "pending: still no node fits, the task stays as it is",
        nodes=[Node("small", memory_gib=1)],
        services=[svc("db", reservations={"memory_bytes": 4 * GIB})],
        tasks=[T("t1", "db", 1, state="pending")],
        expect=set(),
    ),
    Case(
        "pending: a node that fits appears, the task is placed there",
        nodes=[Node("small", memory_gib=1), Node("big", memory_gib=16)],
        services=[svc("db", reservations={"memory_bytes": 4 * GIB})],
        tasks=[T("t1", "db", 1, state="pending")],
        expect={("place", "t1", "big")},
    ),
    Case(
        "pending: a global task its node cannot take is pending with the explanation",
        nodes=[Node("small", memory_gib=1)],
        services=[svc("agent", mode="global", reservations={"memory_bytes": 2 * GIB})],
        expect={
            ("pending", "agent", None, "node small cannot take it (1 node lacks 2 GiB memory)")
        },
    ),
]


@pytest.mark.parametrize("case", params(NODES))
def test_nodes_and_placement(case: Case) -> None:
    run(case)


# --- rolling updates and rollback ---------------------------------------------------------
def web_v2(*, restart: str = "none", state: str = "", **update_config: Any) -> Service:
    """Four replicas updated from nginx:1 to nginx:2 (version 2). Failed tasks are not
    restarted unless a row says so, so that each row shows the update alone."""
    return svc(
        "web",
        replicas=4,
        image="nginx:2",
        previous={"image": "nginx:1"},
        restart_policy={"condition": restart},
        update_config=update_config,
        state=state,
    )


N2 = nodes("n1", "n2")
PLACED = {1: "n1", 2: "n2", 3: "n1", 4: "n2"}


def old(*slots: int, stopped: Iterable[int] = ()) -> list[T]:
    """Version 1 tasks t<slot> on PLACED's nodes, running since 900; `stopped` slots'
    were shut down by the update at 990."""
    down = set(stopped)
    return [
        T(f"t{n}", "web", n, PLACED[n], v=1)
        if n not in down
        else T(
            f"t{n}", "web", n, PLACED[n], "shutdown", at=990, created=900, v=1, desired="shutdown"
        )
        for n in slots
    ]


def new(slot: int, state: str | None = "running", *, at: float, **fields: Any) -> T:
    """Version 2 task u<slot> in `slot`, on the node of its old one."""
    return T(f"u{slot}", "web", slot, PLACED[slot], state, at=at, created=990, **fields)


UPDATES = [
    Case(
        "update parallelism 2, stop-first: two old tasks stopped and replaced in step one",
        nodes=N2,
        services=[web_v2(parallelism=2)],
        tasks=old(1, 2, 3, 4),
        expect={
            ("shutdown", "t1", "update"),
            ("shutdown", "t2", "update"),
            ("create", "web", 1, "n1", "update"),
            ("create", "web", 2, "n2", "update"),
            ("state", "web", "updating"),
        },
    ),
    Case(
        "update parallelism 0: every slot in one step",
        nodes=N2,
        services=[web_v2(parallelism=0)],
        tasks=old(1, 2, 3, 4),
        expect={
            *{("shutdown", f"t{n}", "update") for n in (1, 2, 3, 4)},
            ("create", "web", 1, "n1", "update"),
            ("create", "web", 2, "n2", "update"),
            ("create", "web", 3, "n1", "update"),
            ("create", "web", 4, "n2", "update"),
            ("state", "web", "updating"),
        },
    ),
    Case(
        "update start-first: the new task is created, the old one keeps running",
        nodes=N2,
        services=[web_v2(parallelism=1, order="start-first")],
        tasks=old(1, 2, 3, 4),
        expect={("create", "web", 1, "n1", "update"), ("state", "web", "updating")},
    ),
    Case(
        "update start-first: once the new task runs the old one stops, the next batch starts",
        nodes=N2,
        services=[web_v2(parallelism=1, order="start-first", monitor=0, state="updating")],
        tasks=[*old(1, 2, 3, 4), new(1, at=995)],
        expect={
            ("shutdown", "t1", "update"),
            ("create", "web", 2, "n2", "update"),
        },
    ),
    Case(
        "update: no next batch while the last one's new task is not running yet",
        nodes=N2,
        services=[web_v2(parallelism=1, state="updating")],
        tasks=[*old(1, 2, 3, 4, stopped=[1]), new(1, None, at=990)],
        expect=set(),
    ),
    Case(
        "update delay 10: the next batch waits 10 s after the last new task started",
        nodes=N2,
        services=[web_v2(parallelism=1, delay=10, state="updating")],
        tasks=[*old(1, 2, 3, 4, stopped=[1]), new(1, at=995)],
        expect=set(),
        wakeup=1005,
    ),
    Case(
        "update delay 10: the next batch once the delay has passed",
        nodes=N2,
        services=[web_v2(parallelism=1, delay=10, state="updating")],
        tasks=[*old(1, 2, 3, 4, stopped=[1]), new(1, at=990)],
        expect={("shutdown", "t2", "update"), ("create", "web", 2, "n1", "update")},
    ),
    Case(
        "update failure_action pause: a new task failing pauses the update",
        nodes=N2,
        services=[web_v2(parallelism=1, failure_action="pause", state="updating")],
        tasks=[*old(1, 2, 3, 4, stopped=[1]), new(1, "failed", at=995, exit=1)],
        expect={("state", "web", "paused")},
    ),
    Case(
        "update failure_action continue: the next batch starts despite the failure",
        nodes=N2,
        services=[web_v2(parallelism=1, failure_action="continue", state="updating")],
        tasks=[*old(1, 2, 3, 4, stopped=[1]), new(1, "failed", at=995, exit=1)],
        expect={("shutdown", "t2", "update"), ("create", "web", 2, "n1", "update")},
    ),
    Case(
        "update failure_action rollback: the record goes back to the previous spec",
        nodes=N2,
        services=[web_v2(parallelism=1, failure_action="rollback", state="updating")],
        tasks=[*old(1, 2, 3, 4, stopped=[1]), new(1, "failed", at=995, exit=1)],
        expect={("rollback", "web", "nginx:1")},
    ),
    Case(
        "rollback: the rolled-back slot gets a task with the previous spec again",
        nodes=N2,
        services=[
            svc(
                "web",
                replicas=4,
                image="nginx:1",
                previous={"image": "nginx:2"},
                version=3,
                restart_policy={"condition": "none"},
                state="rolling back",
            )
        ],
        tasks=[
            *(T(t.id, "web", t.slot, t.node, v=1, image="nginx:1") for t in old(2, 3, 4)),
            T(
                "t1",
                "web",
                1,
                "n1",
                "shutdown",
                at=990,
                created=900,
                v=1,
                image="nginx:1",
                desired="shutdown",
            ),
            T("u1", "web", 1, "n1", "failed", at=995, exit=1, v=2),
        ],
        expect={("create", "web", 1, "n1", "update")},
    ),
    Case(
        "max_failure_ratio 0.5: 2 failed slots of 4 are tolerated, the update goes on",
        nodes=N2,
        services=[
            web_v2(parallelism=1, failure_action="pause", max_failure_ratio=0.5, state="updating")
        ],
        tasks=[
            *old(1, 2, 3, 4, stopped=[1, 2]),
            new(1, "failed", at=995, exit=1),
            new(2, "failed", at=996, exit=1),
        ],
        expect={("shutdown", "t3", "update"), ("create", "web", 3, "n1", "update")},
    ),
    Case(
        "max_failure_ratio 0.5: 3 failed slots of 4 pause the update",
        nodes=N2,
        services=[
            web_v2(parallelism=1, failure_action="pause", max_failure_ratio=0.5, state="updating")
        ],
        tasks=[
            *old(1, 2, 3, 4, stopped=[1, 2, 3]),
            new(1, "failed", at=995, exit=1),
            new(2, "failed", at=996, exit=1),
            new(3, "failed", at=997, exit=1),
        ],
        expect={("state", "web", "paused")},
    ),
    Case(
        "update monitor 5: a new task failing 2 s after it started running is a failure",
        nodes=N2,
        services=[web_v2(parallelism=1, monitor=5, failure_action="pause", state="updating")],
        tasks=[*old(1, 2, 3, 4, stopped=[1]), new(1, "failed", at=992, started=990, exit=1)],
        expect={("state", "web", "paused")},
    ),
    Case(
        "update monitor 5: a new task failing after running 10 s is not an update failure",
        nodes=N2,
        services=[web_v2(parallelism=1, monitor=5, failure_action="pause", state="updating")],
        tasks=[*old(1, 2, 3, 4, stopped=[1]), new(1, "failed", at=992, started=982, exit=1)],
        expect={("shutdown", "t2", "update"), ("create", "web", 2, "n1", "update")},
    ),
    Case(
        "update monitor 5: not completed until the last new task has run 5 s",
        nodes=N2,
        services=[web_v2(monitor=5, state="updating")],
        tasks=[*old(1, 2, 3, 4, stopped=[1, 2, 3, 4]), *(new(n, at=997) for n in (1, 2, 3, 4))],
        expect=set(),
        wakeup=1002,
    ),
    Case(
        "update monitor 5: completed once the last new task has run 5 s",
        nodes=N2,
        services=[web_v2(monitor=5, state="updating")],
        tasks=[*old(1, 2, 3, 4, stopped=[1, 2, 3, 4]), *(new(n, at=995) for n in (1, 2, 3, 4))],
        expect={("state", "web", "completed")},
    ),
]


@pytest.mark.parametrize("case", params(UPDATES))
def test_rolling_update(case: Case) -> None:
    run(case)
