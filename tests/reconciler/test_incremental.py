"""Passes that re-plan only some services decide, for those services, what a full pass
decides; and the mirror's change marks name exactly the services whose inputs moved."""

from __future__ import annotations

from controlplane import keys
from controlplane.models import TaskState
from controlplane.reconciler import CreateTask, DeleteTask, Plan, ShutdownTask, plan
from tests.reconciler.world import World


def two_services() -> World:
    world = World()
    for node_id in ("n1", "n2", "n3"):
        world.add_node(node_id)
    world.create_service("web", replicas=3, restart_policy={"delay": 0})
    world.create_service("db", replicas=2, restart_policy={"delay": 0})
    world.settle()
    return world


def decided(result: Plan) -> list[tuple[str, str, str]]:
    """Each op as (kind, service, slot or task id), comparable across passes."""
    out = []
    for op in result.ops:
        if isinstance(op, CreateTask):
            out.append(("create", op.task.service, str(op.task.slot)))
        elif isinstance(op, ShutdownTask):
            out.append(("shutdown", op.task.service, op.task.id))
        elif isinstance(op, DeleteTask):
            out.append(("delete", "", op.task_id))
        else:
            out.append((type(op).__name__, "", ""))
    return sorted(out)


def test_a_pass_over_one_service_decides_what_a_full_pass_decides_for_it() -> None:
    world = two_services()
    (failed, *_) = world.tasks("web")
    world.report(failed.id, TaskState.FAILED, exit_code=1)
    world.update_service("db", replicas=1)

    snapshot = world.snapshot()
    full = plan(snapshot, now=world.now, config=world.config)
    web = plan(snapshot, now=world.now, config=world.config, services={"web"})
    db = plan(snapshot, now=world.now, config=world.config, services={"db"})

    assert decided(web) == [("create", "web", str(failed.slot))]
    assert [kind for kind, service, _ in decided(db)] == ["shutdown"]
    assert decided(full) == sorted(decided(web) + decided(db))
    # placement in a narrow pass still counts the other service's tasks on each node
    (created,) = [op for op in web.ops if isinstance(op, CreateTask)]
    assert created.task.id == next(op for op in full.ops if isinstance(op, CreateTask)).task.id
    assert created.task.node_id == next(
        op.task.node_id for op in full.ops if isinstance(op, CreateTask)
    )


def test_a_removed_service_is_retired_by_a_pass_over_its_name() -> None:
    world = two_services()
    world.delete(keys.service("db"))
    result = plan(world.snapshot(), now=world.now, config=world.config, services={"db"})
    assert [kind for kind, _, _ in decided(result)] == ["shutdown", "shutdown"]
    untouched = plan(world.snapshot(), now=world.now, config=world.config, services={"web"})
    assert untouched.ops == ()


def test_change_marks_name_the_services_whose_inputs_moved() -> None:
    world = two_services()
    contents = world.contents
    before = world.revision
    assert contents.changed_services(before) == frozenset()

    (task, *_) = world.tasks("web")
    world.report(task.id, TaskState.FAILED, exit_code=1)
    assert contents.changed_services(before) == {"web"}

    world.update_service("db", replicas=4)
    assert contents.changed_services(before) == {"web", "db"}
    after_db = world.revision
    assert contents.changed_services(after_db) == frozenset()

    world.node_down("n1")  # a node concerns every service
    assert contents.changed_services(after_db) is None
    assert set(world.snapshot().task_ids_of("db")) == {t.id for t in world.tasks("db")}
