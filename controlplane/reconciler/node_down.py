"""Node down: a node whose heartbeat key has been gone longer than the grace period.

A node's `nodes/<id>` key lives on its agent's lease; when the lease ends the key goes
and the node is down. A blip (an agent restart, a short partition) must not churn tasks,
so for `node_grace` seconds (default: one node TTL) its tasks still count as running
where they are, and the leader asks for a pass at the moment the grace ends.

After the grace period a task of the node that has not ended is **lost**:
- it is set to desired state `shutdown` and its status to `orphaned`, in one write, so
  whatever the agent finds when it comes back, it will not run the task on;
- its slot gets a new task elsewhere at once: this is not a restart, so neither the
  restart delay nor the restart budget applies (a global service's task has no
  elsewhere: it waits for the node to come back, and then gets a new task there).

When the node returns, each of its orphaned tasks is deleted: the agent then removes
what is left of it. A slot therefore never runs twice: the old task was told to stop
before its replacement existed, and it is gone soon after its node is back.
"""

from __future__ import annotations

from controlplane.models import TaskState
from controlplane.reconciler.builder import PlanBuilder
from controlplane.reconciler.view import TaskInfo


def replace_if_lost(info: TaskInfo, out: PlanBuilder) -> bool:
    """Orphan a lost task; True when it was lost (its slot needs a new task)."""
    if not (info.live and info.lost):
        return False
    out.orphan(info)
    return True


def wake_when_lost(info: TaskInfo, out: PlanBuilder) -> None:
    """A task on a node that is down but still in its grace period: look again then."""
    if info.live and info.lost_at is not None and not info.lost:
        out.wake_at(info.lost_at)


def returned_orphan(info: TaskInfo) -> bool:
    """An orphaned task whose node is back: to be deleted."""
    return not info.live and info.node_up and not info.pending and info.state is TaskState.ORPHANED
