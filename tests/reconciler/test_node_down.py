"""Node down: replaced after the grace period, orphans removed when the node returns."""

from __future__ import annotations

from controlplane import keys
from controlplane.models import TaskState
from controlplane.models.task import DesiredState
from controlplane.reconciler import CreateTask, DeleteTask, ShutdownTask
from tests.reconciler.world import World


def test_replaced_after_grace_and_stale_tasks_removed_on_return() -> None:
    world = World(node_grace=10.0)
    world.add_node("n1")
    world.add_node("n2")
    world.create_service("web", replicas=2)
    world.settle()
    on_n1 = next(task for task in world.live("web") if task.node_id == "n1")

    world.node_down("n1")
    down_at = world.now
    world.now += 4
    decided = world.step()
    assert decided.ops == ()  # a blip is not acted on
    assert decided.next_wakeup == down_at + 10

    world.now = down_at + 10
    decided = world.step()
    shutdowns = [op for op in decided.ops if isinstance(op, ShutdownTask)]
    creates = [op for op in decided.ops if isinstance(op, CreateTask)]
    assert [op.task.id for op in shutdowns] == [on_n1.id]
    assert shutdowns[0].task.desired_state is DesiredState.SHUTDOWN
    assert shutdowns[0].status is not None
    assert shutdowns[0].status.state is TaskState.ORPHANED
    assert [(op.task.slot, op.task.node_id, op.reason) for op in creates] == [
        (on_n1.slot, "n2", "node down")
    ]
    world.settle()
    assert len(world.running("web")) == 2
    assert on_n1.id in {task.id for task in world.tasks("web")}  # kept while n1 is away

    world.heartbeat("n1")  # the node returns: its stale task goes, nothing moves back
    decided = world.step()
    assert [(type(op), op.reason) for op in decided.ops] == [(DeleteTask, "node returned")]
    assert keys.task("n1", on_n1.id) not in world.kv
    assert keys.status(on_n1.id) not in world.kv
    world.settle()
    assert sorted(task.node_id for task in world.running("web")) == ["n2", "n2"]


def test_a_slot_never_runs_twice() -> None:
    world = World(node_grace=10.0)
    world.add_node("n1")
    world.add_node("n2")
    world.create_service("web", replicas=1)
    world.settle()
    world.node_down("n1")
    world.now += 10
    world.settle()
    world.heartbeat("n1")
    for _ in range(5):
        world.step()
        world.agents()
        live = [t for t in world.live("web") if world.state(t.id) is not TaskState.SHUTDOWN]
        assert len(live) == 1


def test_a_node_never_seen_up_counts_from_mirror_start() -> None:
    world = World(node_grace=10.0)
    world.add_node("n1")
    world.add_node("n2")
    world.create_service("web", replicas=1)
    world.settle()
    (task,) = world.live("web")
    # A new leader's mirror starts while that node is already down.
    world.node_down(task.node_id)
    world.contents.down_since.clear()
    world.watching_since = world.now
    assert world.plan().next_wakeup == world.now + 10
