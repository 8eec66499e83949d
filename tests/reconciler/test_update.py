"""Rolling updates: batches, delay, order, monitor, failure actions, rollback."""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.reconciler import CreateTask, ShutdownTask, UpdateServiceRecord
from tests.reconciler.world import World


def cluster(**update_config: object) -> World:
    world = World()
    for node_id in ("n1", "n2", "n3"):
        world.add_node(node_id)
    world.create_service("web", replicas=6, update_config=update_config)
    world.settle()
    world.now += 1
    return world


def roll(world: World, *, failing: Iterable[str] = (), passes: int = 40) -> list[list[int]]:
    """The slots of each update batch (`World.roll`)."""
    return [slots for _, slots in world.roll(failing=failing, passes=passes)]


def images(world: World) -> list[str]:
    return sorted(task.spec.image for task in world.running("web"))


def test_six_replicas_parallelism_two_update_in_three_batches() -> None:
    world = cluster(parallelism=2, monitor=3)
    world.update_service("web", image="nginx:2")
    decided = world.step()
    first = [op for op in decided.ops if isinstance(op, CreateTask)]
    stopped = [op for op in decided.ops if isinstance(op, ShutdownTask)]
    assert sorted(op.task.slot or 0 for op in first) == [1, 2]
    assert sorted(op.task.slot or 0 for op in stopped) == [1, 2]  # stop-first
    assert world.record("web").update_state == "updating"
    # Nothing more starts while the batch is in flight.
    assert not [op for op in world.step().ops if isinstance(op, CreateTask)]
    world.agents()

    assert roll(world) == [[3, 4], [5, 6]]
    assert images(world) == ["nginx:2"] * 6
    assert world.record("web").update_state == "completed"
    assert world.plan().ops == ()


def test_delay_between_batches_and_monitor_before_completion() -> None:
    world = cluster(parallelism=3, delay=10, monitor=5)
    world.update_service("web", image="nginx:2")
    world.step()
    world.agents()  # the first batch runs now
    started = world.now
    decided = world.step()
    assert decided.ops == ()
    assert decided.next_wakeup == started + 10
    world.now = started + 10
    world.step()
    world.agents()
    second = world.now
    decided = world.step()
    assert decided.ops == ()
    assert decided.next_wakeup == second + 5  # monitoring the last batch
    world.now = second + 5
    (op,) = world.step().ops
    assert isinstance(op, UpdateServiceRecord)
    assert op.record.update_state == "completed"


def test_start_first_stops_the_old_task_once_the_new_one_runs() -> None:
    world = cluster(parallelism=1, order="start-first", monitor=0)
    world.update_service("web", image="nginx:2")
    decided = world.step()
    assert [type(op).__name__ for op in decided.ops] == ["CreateTask", "UpdateServiceRecord"]
    world.agents()
    decided = world.step()
    stopped = [op.task.slot for op in decided.ops if isinstance(op, ShutdownTask)]
    created = [op.task.slot for op in decided.ops if isinstance(op, CreateTask)]
    assert stopped == [1]
    assert created == [2]
    roll(world)
    assert images(world) == ["nginx:2"] * 6


def test_failure_action_rollback_returns_to_the_previous_spec() -> None:
    world = cluster(parallelism=2, failure_action="rollback", monitor=5)
    world.update_service("web", image="broken:2")
    roll(world, failing={"broken:2"})
    record = world.record("web")
    assert record.spec.image == "nginx:1"
    assert record.previous_spec is not None
    assert record.previous_spec.image == "broken:2"
    assert record.spec_version == 3
    assert record.update_state == "rolled back"
    assert images(world) == ["nginx:1"] * 6


def test_failure_action_pause_stops_batches_until_a_new_spec() -> None:
    world = cluster(parallelism=2, failure_action="pause", monitor=5)
    world.update_service("web", image="broken:2")
    roll(world, failing={"broken:2"}, passes=10)
    record = world.record("web")
    assert record.update_state == "paused"
    assert "failure" in record.update_message
    # Slots 3..6 were never touched.
    assert images(world).count("nginx:1") == 4

    world.update_service("web", image="nginx:3")
    roll(world)
    assert images(world) == ["nginx:3"] * 6
    assert world.record("web").update_state == "completed"


def test_max_failure_ratio_tolerates_failures_up_to_the_ratio() -> None:
    world = cluster(parallelism=1, failure_action="pause", max_failure_ratio=0.5, monitor=5)
    world.update_service("web", image="broken:2")
    batches = roll(world, failing={"broken:2"}, passes=20)
    # 3 failed slots of 6 is not above 0.5; the 4th is.
    assert batches == [[1], [2], [3], [4]]
    assert world.record("web").update_state == "paused"


def test_failure_action_continue_carries_on() -> None:
    world = cluster(parallelism=2, failure_action="continue", monitor=5)
    world.update_service("web", image="broken:2")
    batches = roll(world, failing={"broken:2"}, passes=20)
    assert batches == [[1, 2], [3, 4], [5, 6]]


def test_changing_only_replicas_is_not_an_update() -> None:
    world = cluster(parallelism=1)
    world.update_service("web", replicas=7)
    world.settle()
    assert world.record("web").update_state == ""
