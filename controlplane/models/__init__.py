"""The documents shoal keeps in the store, one module per kind.

Every value in the store is one of these, serialised as JSON with a `version` field so
that a newer shoal can read what an older one wrote. They are pydantic models: the API
validates input with them, and agents and managers parse store values with them.
"""

from controlplane.models.cluster import ClusterRecord, LeaderRecord, ManagerRecord
from controlplane.models.node import Availability, NodeInfo, NodeRole, NodeSpec
from controlplane.models.service import (
    HealthCheck,
    PortConfig,
    ResourceSpec,
    RestartPolicy,
    ServiceMode,
    ServiceSpec,
    UpdateConfig,
)
from controlplane.models.task import Endpoint, Task, TaskSpec, TaskState, TaskStatus

__all__ = [
    "Availability",
    "ClusterRecord",
    "Endpoint",
    "HealthCheck",
    "LeaderRecord",
    "ManagerRecord",
    "NodeInfo",
    "NodeRole",
    "NodeSpec",
    "PortConfig",
    "ResourceSpec",
    "RestartPolicy",
    "ServiceMode",
    "ServiceSpec",
    "Task",
    "TaskSpec",
    "TaskState",
    "TaskStatus",
    "UpdateConfig",
]
