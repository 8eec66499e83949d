"""History and retirement: which finished tasks are deleted, and how a slot goes away.

Each slot keeps its newest `history_limit` tasks (5 by default, the running one
included) so that `service ps` can show what happened; older tasks are deleted once
they are finished. When the restart policy counts attempts, the slot keeps at least
`max_attempts + 1` tasks, so that trimming never hands a crashing slot a new budget.

A slot (or a whole service) that is no longer wanted is *retired*: each task still
running is set to desired state `shutdown`, and each finished one is deleted (a task
stopping on request is left until it has stopped). A task on a down node is deleted at
once: its agent removes what is left of it when the node is back.

An orphaned task whose node has returned is deleted whatever its age (`node_down`).
"""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.models.service import RestartPolicy
from controlplane.reconciler.builder import PlanBuilder
from controlplane.reconciler.node_down import returned_orphan
from controlplane.reconciler.view import TaskInfo


def kept_per_slot(policy: RestartPolicy, *, history_limit: int) -> int:
    if policy.max_attempts:
        return max(history_limit, policy.max_attempts + 1)
    return max(history_limit, 1)


def trim(tasks_newest_first: Iterable[TaskInfo], *, keep: int, out: PlanBuilder) -> None:
    for index, info in enumerate(tasks_newest_first):
        if returned_orphan(info):
            out.delete(info, reason="node returned")
        elif index >= keep and info.finished:
            out.delete(info, reason="history")


def retire(tasks: Iterable[TaskInfo], *, reason: str, out: PlanBuilder) -> None:
    for info in tasks:
        if info.finished or info.pending or not info.node_up or returned_orphan(info):
            out.delete(info, reason=reason)
        elif info.live:
            out.shutdown(info, reason=reason)
