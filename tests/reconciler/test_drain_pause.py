"""Drain moves tasks off a node; pause keeps them and takes no new ones."""

from __future__ import annotations

from collections import Counter

from controlplane.models import Availability, TaskState
from controlplane.reconciler import CreateTask, ShutdownTask
from tests.reconciler.world import World


def test_drain_moves_tasks_elsewhere() -> None:
    world = World()
    for node_id in ("n1", "n2", "n3"):
        world.add_node(node_id)
    world.create_service("web", replicas=6)
    world.settle()
    world.set_availability("n1", Availability.DRAIN)
    decided = world.step()
    stopped = [op for op in decided.ops if isinstance(op, ShutdownTask)]
    created = [op for op in decided.ops if isinstance(op, CreateTask)]
    assert len(stopped) == 2
    assert {op.reason for op in stopped} == {"node drained"}
    assert sorted(op.task.slot or 0 for op in created) == sorted(
        op.task.slot or 0 for op in stopped
    )
    assert {op.task.node_id for op in created} <= {"n2", "n3"}
    world.settle()
    assert Counter(task.node_id for task in world.running("web")) == {"n2": 3, "n3": 3}

    world.set_availability("n1", Availability.ACTIVE)  # nothing moves back
    world.settle()
    assert Counter(task.node_id for task in world.running("web")) == {"n2": 3, "n3": 3}


def test_pause_keeps_tasks_and_takes_no_new_ones() -> None:
    world = World()
    world.add_node("n1")
    world.add_node("n2")
    world.create_service("web", replicas=2)
    world.settle()
    world.set_availability("n1", Availability.PAUSE)
    assert world.step().ops == ()
    world.update_service("web", replicas=6)
    world.settle()
    assert Counter(task.node_id for task in world.running("web")) == {"n1": 1, "n2": 5}


def test_restart_on_a_paused_node_goes_elsewhere() -> None:
    world = World()
    world.add_node("n1")
    world.add_node("n2")
    world.create_service("web", replicas=1, restart_policy={"delay": 0})
    world.settle()
    (task,) = world.live("web")
    world.set_availability(task.node_id, Availability.PAUSE)
    world.report(task.id, TaskState.FAILED, exit_code=1)
    (op,) = [op for op in world.step().ops if isinstance(op, CreateTask)]
    assert op.task.node_id != task.node_id
