"""The store layout: the one module that spells a key.

`pending/<task-id>` extends the design's table: a task no node fits lives there (with
its status carrying the scheduler's explanation) until the leader places it, moving it
to `tasks/<node-id>/<task-id>` in one transaction under the same id. `routes/<service>`
(leader-written, fenced) is the routing mesh's table of a service's running endpoints.
`ports/<protocol>/<number>` (written by any manager, with the service record in one
transaction) claims an ingress-published port for one service (see
`controlplane.api.control.port_claims`).

Every key is relative to the cluster prefix (the path of the discovery URL); the store
backend adds the prefix. The table in docs/DESIGN.md lists who writes each key and for
how long it lives. Nothing else in shoal builds a key string by hand: call these.
"""

from __future__ import annotations

CLUSTER = "cluster"
LEADER = "leader"
MANAGERS = "managers/"
NODES = "nodes/"
NODE_SPECS = "node-specs/"
SERVICES = "services/"
TASKS = "tasks/"
STATUS = "status/"
PENDING = "pending/"
ROUTES = "routes/"
PORTS = "ports/"


def manager(manager_id: str) -> str:
    return f"{MANAGERS}{manager_id}"


def node(node_id: str) -> str:
    return f"{NODES}{node_id}"


def node_spec(node_id: str) -> str:
    return f"{NODE_SPECS}{node_id}"


def service(name: str) -> str:
    return f"{SERVICES}{name}"


def node_tasks(node_id: str) -> str:
    """The prefix an agent watches: every task assigned to one node."""
    return f"{TASKS}{node_id}/"


def task(node_id: str, task_id: str) -> str:
    return f"{TASKS}{node_id}/{task_id}"


def status(task_id: str) -> str:
    return f"{STATUS}{task_id}"


def pending(task_id: str) -> str:
    """A task the leader could not place yet: no node id, the reason in its status."""
    return f"{PENDING}{task_id}"


def route(service_name: str) -> str:
    """The routing mesh's table for one service (leader-written): published port ->
    running endpoints. Agents watch `routes/` to forward ingress ports."""
    return f"{ROUTES}{service_name}"


def port(protocol: str, number: int) -> str:
    """The claim on an ingress-published port: `ports/tcp/30000` names its service."""
    return f"{PORTS}{protocol}/{number}"


def last_segment(key: str) -> str:
    """`nodes/abc` -> `abc`; `tasks/n1/t9` -> `t9`."""
    return key.rsplit("/", 1)[-1]


def split_task_key(key: str) -> tuple[str, str]:
    """`tasks/<node-id>/<task-id>` -> (node id, task id)."""
    rest = key[len(TASKS) :]
    node_id, _, task_id = rest.partition("/")
    if not node_id or not task_id:
        raise ValueError(f"not a task key: {key!r}")
    return node_id, task_id
