"""Pending tasks: recorded with the scheduler's explanation, placed once a node fits."""

from __future__ import annotations

from controlplane import keys
from controlplane.models import TaskState
from controlplane.reconciler import CreateTask, PlacePending
from tests.reconciler.world import GIB, World


def test_pending_with_an_explanation_then_placed_when_a_node_appears() -> None:
    world = World()
    world.add_node("small", memory=1 * GIB)
    world.create_service("db", replicas=1, reservations={"memory_bytes": 4 * GIB})
    (op,) = world.step().ops
    assert isinstance(op, CreateTask)
    assert op.task.node_id == ""
    assert op.key == keys.pending(op.task.id)
    assert op.status.state is TaskState.PENDING
    assert op.status.message == "no suitable node (1 node lacks 4 GiB memory)"
    assert world.state(op.task.id) is TaskState.PENDING
    assert world.step().ops == ()  # still nowhere to go

    world.add_node("big", memory=16 * GIB)
    (placed,) = world.step().ops
    assert isinstance(placed, PlacePending)
    assert placed.task.id == op.task.id
    assert placed.task.node_id == "big"
    assert keys.pending(op.task.id) not in world.kv
    assert keys.task("big", op.task.id) in world.kv
    assert world.state(op.task.id) is TaskState.ASSIGNED
    world.settle()
    assert [task.node_id for task in world.running("db")] == ["big"]


def test_pending_tasks_go_first_and_later_requests_see_earlier_ones() -> None:
    world = World()
    world.add_node("n1", memory=3 * GIB)
    world.create_service("db", replicas=4, reservations={"memory_bytes": 1 * GIB})
    decided = world.step()
    states = sorted(op.status.state.value for op in decided.ops if isinstance(op, CreateTask))
    assert states == ["assigned", "assigned", "assigned", "pending"]


def test_a_pending_task_with_an_old_spec_is_replaced() -> None:
    world = World()
    world.add_node("small", memory=1 * GIB)
    world.create_service("db", replicas=1, reservations={"memory_bytes": 4 * GIB})
    world.step()
    (old,) = world.tasks("db")
    world.update_service("db", image="postgres:16", reservations={"memory_bytes": 0})
    world.settle()
    (task,) = world.running("db")
    assert task.spec.image == "postgres:16"
    assert old.id not in {t.id for t in world.tasks("db")}


def test_scaling_down_deletes_pending_tasks_first() -> None:
    world = World()
    world.add_node("n1", memory=2 * GIB)
    world.create_service("db", replicas=3, reservations={"memory_bytes": 1 * GIB})
    world.settle()
    assert len(world.running("db")) == 2
    world.update_service("db", replicas=2)
    world.settle()
    assert len(world.running("db")) == 2
    assert not world.contents.pending
