"""Global services: one task per eligible node, following nodes as they come and go."""

from __future__ import annotations

from controlplane import keys
from controlplane.models import Availability, TaskState
from controlplane.reconciler import CreateTask
from tests.reconciler.world import GIB, World


def nodes_of(world: World, service: str) -> list[str]:
    return sorted(task.node_id for task in world.live(service))


def test_one_task_per_node_and_new_nodes_get_one() -> None:
    world = World()
    world.add_node("n1")
    world.add_node("n2")
    world.create_service("agent", mode="global")
    decided = world.step()
    creates = [op for op in decided.ops if isinstance(op, CreateTask)]
    assert sorted(op.task.node_id for op in creates) == ["n1", "n2"]
    assert all(op.task.slot is None for op in creates)
    assert {op.reason for op in creates} == {"node joined"}
    world.settle()

    world.add_node("n3")
    world.settle()
    assert nodes_of(world, "agent") == ["n1", "n2", "n3"]
    assert len(world.running("agent")) == 3


def test_constraints_paused_and_drained_nodes() -> None:
    world = World()
    world.add_node("n1", labels={"zone": "a"})
    world.add_node("n2", labels={"zone": "b"})
    world.add_node("n3", labels={"zone": "a"}, availability=Availability.PAUSE)
    world.create_service("agent", mode="global", placement={"constraints": ["node.labels.zone==a"]})
    world.settle()
    assert nodes_of(world, "agent") == ["n1"]  # n2 does not match, n3 is paused

    world.set_availability("n3", Availability.ACTIVE)
    world.settle()
    assert nodes_of(world, "agent") == ["n1", "n3"]

    world.set_availability("n3", Availability.PAUSE)  # pause keeps what runs
    world.settle()
    assert nodes_of(world, "agent") == ["n1", "n3"]

    world.set_availability("n1", Availability.DRAIN)  # drain stops it
    world.settle()
    assert nodes_of(world, "agent") == ["n3"]


def test_a_node_that_stops_matching_loses_its_task() -> None:
    world = World()
    world.add_node("n1", labels={"gpu": "yes"})
    world.create_service(
        "agent", mode="global", placement={"constraints": ["node.labels.gpu==yes"]}
    )
    world.settle()
    assert nodes_of(world, "agent") == ["n1"]
    spec = world.contents.node_specs["n1"]
    world.put(keys.node_spec("n1"), spec.model_copy(update={"labels": {}}))
    world.settle()
    assert world.tasks("agent") == []


def test_a_removed_node_loses_its_task_and_a_down_one_is_orphaned_then_renewed() -> None:
    world = World(node_grace=10.0)
    world.add_node("n1")
    world.add_node("n2")
    world.create_service("agent", mode="global")
    world.settle()
    old = {task.node_id: task.id for task in world.live("agent")}

    world.node_down("n1")
    world.now += 11
    world.settle()
    assert nodes_of(world, "agent") == ["n2"]  # no elsewhere for a global task

    world.heartbeat("n1")
    world.settle()
    assert nodes_of(world, "agent") == ["n1", "n2"]
    assert old["n1"] not in {task.id for task in world.tasks("agent")}

    world.node_down("n2")
    world.delete(keys.node_spec("n2"))  # `node rm`
    world.settle()
    assert nodes_of(world, "agent") == ["n1"]
    assert old["n2"] not in {task.id for task in world.tasks("agent")}


def test_a_global_task_its_node_cannot_take_waits_pending_there_with_the_reason() -> None:
    """As in swarm mode: the task is recorded as pending, with the scheduler's reason
    (`service ps` and `GET /tasks` show it), and placed on that node, never another, as
    soon as the node can take it."""
    world = World()
    world.add_node("small", memory=1 * GIB)
    world.add_node("big", memory=16 * GIB)
    world.create_service("agent", mode="global", reservations={"memory_bytes": 2 * GIB})
    world.settle()
    (pending,) = world.contents.pending.values()
    assert pending.task.pinned_node == "small"
    assert world.state(pending.task.id) is TaskState.PENDING
    status = world.contents.statuses[pending.task.id].status
    assert status.message == "node small cannot take it (1 node lacks 2 GiB memory)"
    assert [task.node_id for task in world.running("agent")] == ["big"]
    assert world.step().ops == ()  # nothing new while it still does not fit

    world.heartbeat("small", memory=4 * GIB)  # the node grows (or frees memory)
    world.settle()
    assert not world.contents.pending
    assert sorted(task.node_id for task in world.running("agent")) == ["big", "small"]
    assert pending.task.id in {task.id for task in world.running("agent")}


def test_only_a_pending_global_task_writes_its_pin() -> None:
    """A placed task's JSON is what it was before `pinned_node` existed, so an agent of
    an earlier version still reads every task meant for it."""
    world = World()
    world.add_node("small", memory=1 * GIB)
    world.create_service("agent", mode="global", reservations={"memory_bytes": 2 * GIB})
    world.settle()
    (pending,) = world.contents.pending.values()
    assert b'"pinned_node":"small"' in world.kv[keys.pending(pending.task.id)][0]
    world.heartbeat("small", memory=4 * GIB)
    world.settle()
    assert b"pinned_node" not in world.kv[keys.task("small", pending.task.id)][0]


def test_a_pending_global_task_goes_with_its_node() -> None:
    world = World()
    world.add_node("small", memory=1 * GIB)
    world.create_service("agent", mode="global", reservations={"memory_bytes": 2 * GIB})
    world.settle()
    assert len(world.contents.pending) == 1
    world.set_availability("small", Availability.DRAIN)
    world.settle()
    assert not world.contents.pending
    assert world.tasks("agent") == []


def test_a_global_service_updates_node_by_node() -> None:
    world = World()
    for node_id in ("n1", "n2", "n3"):
        world.add_node(node_id)
    world.create_service("agent", mode="global", update_config={"parallelism": 1, "monitor": 0})
    world.settle()
    world.update_service("agent", image="agent:2")
    batches = []
    for _ in range(10):
        created = [op.task.node_id for op in world.step().ops if isinstance(op, CreateTask)]
        if created:
            batches.append(created)
        world.agents()
    assert batches == [["n1"], ["n2"], ["n3"]]
    assert sorted(task.spec.image for task in world.running("agent")) == ["agent:2"] * 3
    assert world.record("agent").update_state == "completed"
