"""Bodies of `/swarm`: init, join, join tokens, and the cluster summary."""

from __future__ import annotations

from pydantic import BaseModel, Field

from controlplane.api.control.ids import NODE_ID
from controlplane.api.schemas.common import Request
from controlplane.api.schemas.nodes import LabelKey, LabelValue
from controlplane.models import NodeRole

SettingValue = str | int | float | bool


class InitRequest(Request):
    settings: dict[str, SettingValue] = Field(
        default_factory=dict, description="Cluster-wide settings, kept in the cluster record"
    )


class JoinTokens(BaseModel):
    worker: str
    manager: str


class InitResponse(BaseModel):
    cluster_id: str
    join_tokens: JoinTokens
    api_token: str = Field(description="Send as `Authorization: Bearer <token>`")
    message: str = "These tokens are shown once; only their hashes are kept."


class JoinRequest(Request):
    token: str = Field(min_length=1, max_length=256)
    node_id: str | None = Field(
        default=None,
        pattern=NODE_ID.pattern,
        description="The node's id when it joins again; null on a first join",
    )
    hostname: str = Field(min_length=1, max_length=253)
    addr: str = Field(min_length=1, max_length=255, description="Address other nodes reach")
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        max_length=256,
        description="The node's operator labels (`--label`), written with its spec on a "
        "first join; a node that joins again keeps the labels its spec has",
    )


class JoinResponse(BaseModel):
    node_id: str
    cluster_id: str
    discovery: str = Field(description="The discovery URL the agent talks to from now on")
    role: NodeRole


class RotateRequest(Request):
    role: NodeRole


class RotateResponse(BaseModel):
    role: NodeRole
    token: str


class LeaderInfo(BaseModel):
    manager_id: str
    api_url: str
    term_started: float
    term: int = Field(description="The term's fencing token: grows with every new leader")


class ManagerInfo(BaseModel):
    id: str
    api_url: str
    started: float
    shoal_version: str
    leader: bool
    reachability: str = Field(
        description="reachable: its API answered this manager's probe of `/health` within "
        "a second (the manager answering is always reachable); unreachable: it renews its "
        "lease but does not answer (hung, stopped, or cut off from this manager)",
        examples=["reachable", "unreachable"],
    )


class SwarmInfo(BaseModel):
    cluster_id: str | None = Field(description="null until `swarm init`")
    created: float | None
    leader: LeaderInfo | None
    managers: list[ManagerInfo]
    nodes: dict[str, int] = Field(description="node counts by status (ready, down)")
    tasks: dict[str, int] = Field(description="task counts by state")
    services: int
