"""Drain and pause: what an operator's node availability does to tasks.

- **active**: the node takes new tasks and keeps its own.
- **pause**: the node keeps the tasks it has, and takes no new one. Nothing here acts on
  it: the scheduler's `ready` filter refuses paused nodes for new tasks, so a restart or
  a scale-up lands elsewhere; a global service gets no task on a paused node it has none
  on, and keeps the one it has.
- **drain**: the node's tasks move off. Each task of a drained node that has not ended is
  set to desired state `shutdown`, and its slot gets a new task elsewhere in the same
  pass (a global service's task is just stopped). The scheduler refuses drained nodes,
  so the replacement cannot land back on it. Setting the node active again moves
  nothing back: later placements simply consider it again.
"""

from __future__ import annotations

from controlplane.reconciler.builder import PlanBuilder
from controlplane.reconciler.view import TaskInfo


def move_if_drained(info: TaskInfo, out: PlanBuilder) -> bool:
    """Stop a live task on a drained node; True when its slot needs a new task."""
    if not (info.live and info.drained):
        return False
    out.shutdown(info, reason="node drained")
    return True
