"""Bodies of `/nodes`."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from controlplane.api.control.nodes import ManagerStatus, NodeState, NodeStatus
from controlplane.api.schemas.common import Request
from controlplane.models import Availability, NodeRole

LabelKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}$")]
LabelValue = Annotated[str, StringConstraints(max_length=1024)]


class NodeUpdate(Request):
    """`node update`: each field left out (or empty) is left as it is."""

    availability: Availability | None = None
    role: NodeRole | None = None
    labels_add: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="Operator labels to set (key: value)"
    )
    labels_remove: list[LabelKey] = Field(default_factory=list, description="Label keys to remove")


class NodeView(BaseModel):
    id: str
    hostname: str
    addr: str
    status: NodeStatus
    availability: Availability
    role: NodeRole
    manager_status: ManagerStatus | None
    engine_version: str
    labels: dict[str, str]
    engine_labels: dict[str, str]
    os: str
    arch: str
    nano_cpus: int
    memory_bytes: int
    runtime: str
    agent_version: str
    joined: float

    @classmethod
    def of(cls, state: NodeState) -> NodeView:
        info, spec = state.info, state.spec
        return cls(
            id=state.id,
            hostname=info.hostname if info else "",
            addr=info.addr if info else "",
            status=state.status,
            availability=spec.availability,
            role=spec.role,
            manager_status=state.manager_status,
            engine_version=info.engine_version if info else "",
            labels=spec.labels,
            engine_labels=info.engine_labels if info else {},
            os=info.os if info else "",
            arch=info.arch if info else "",
            nano_cpus=info.nano_cpus if info else 0,
            memory_bytes=info.memory_bytes if info else 0,
            runtime=info.runtime if info else "",
            agent_version=info.agent_version if info else "",
            joined=spec.joined,
        )
