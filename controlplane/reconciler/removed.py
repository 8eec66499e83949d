"""What is left of removed services: their tasks, and statuses whose task is gone.

A task whose service record is gone, or whose service was removed and created again
under the same name (another service id), is retired like a scaled-down slot
(`history.retire`): stopped if it runs, deleted once finished.

A status whose task key is gone (an agent reported just as its task was deleted) is
deleted, so that statuses never outlive their tasks.
"""

from __future__ import annotations

from controlplane.reconciler import history
from controlplane.reconciler.builder import PlanBuilder
from controlplane.reconciler.view import TaskInfo


def retire_orphans(tasks: list[TaskInfo], *, out: PlanBuilder) -> None:
    history.retire(tasks, reason="service removed", out=out)


def delete_dangling_statuses(out: PlanBuilder) -> None:
    snapshot = out.view.snapshot
    for task_id, stored in snapshot.statuses.items():
        if task_id not in snapshot.tasks:
            out.delete_status(task_id, stored)
