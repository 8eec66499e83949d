"""The reconciler: the leader's loop that turns desired services into tasks on nodes.

    mirror ──snapshot──> plan(snapshot, now, config) ──Plan──> apply_plan ──fenced txns──> store
      ▲                      │ pure: no store, no clock                                    │
      └───────── watch ──────┼─────────────────────────────────────────────────────────────┘
                             ▼
       view          classify every task once (live, exited, lost, drained, current)
       replicated    slots 1..N: scale up / down            global_mode   one per eligible node
       slots         per slot: node_down, drain, restart, pending, duplicates
       update        rolling update: batches, delay, order, monitor, failure action
       history       keep the last 5 tasks per slot; retire removed slots and services
       placement     one scheduler call for every new and pending task

Where to change what:

* a rule about one slot (when to replace a task): `slots`, and the case module it
  calls (`node_down`, `drain`, `restart`);
* how many tasks a service has, and which go on scale-down: `replicated`, `global_mode`;
* rolling updates and rollbacks: `update`;
* what the scheduler is told, and what its answers become: `placement`;
* how ops are written (guards, batching, fencing): `plan`, `applier`;
* timing (debounce, wake-ups, retries) and metrics: `loop`.

The manager runs a `controlplane.state.ClusterMirror` always, and a `Reconciler` while
it leads (see `loop`).
"""

from controlplane.reconciler.applier import ApplyResult, NotLeader, apply_plan
from controlplane.reconciler.config import ReconcilerConfig
from controlplane.reconciler.loop import Reconciler, ReconcilerMetrics
from controlplane.reconciler.plan import (
    CreateTask,
    DeleteStatus,
    DeleteTask,
    PlacePending,
    Plan,
    PlanOp,
    ShutdownTask,
    UpdateServiceRecord,
)
from controlplane.reconciler.planner import plan

__all__ = [
    "ApplyResult",
    "CreateTask",
    "DeleteStatus",
    "DeleteTask",
    "NotLeader",
    "PlacePending",
    "Plan",
    "PlanOp",
    "Reconciler",
    "ReconcilerConfig",
    "ReconcilerMetrics",
    "ShutdownTask",
    "UpdateServiceRecord",
    "apply_plan",
    "plan",
]
