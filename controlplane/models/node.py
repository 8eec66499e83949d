"""Nodes: what an agent reports (`nodes/<id>`) and what operators decide (`node-specs/<id>`)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from controlplane.models.base import Document


class Availability(StrEnum):
    ACTIVE = "active"  # takes new tasks
    PAUSE = "pause"  # keeps its tasks, takes no new ones
    DRAIN = "drain"  # its tasks move elsewhere


class NodeRole(StrEnum):
    WORKER = "worker"
    MANAGER = "manager"


class NodeInfo(Document):
    """The heartbeat document, kept alive on the node's lease. Gone means down."""

    id: str
    hostname: str
    addr: str
    os: str = "linux"
    arch: str = "x86_64"
    nano_cpus: int = 0
    memory_bytes: int = 0
    engine_labels: dict[str, str] = Field(default_factory=dict)
    engine_version: str = ""
    runtime: str = "docker"
    agent_version: str = ""
    agent_api: str = ""  # the agent's own HTTP endpoint, when it serves one
    # Its bearer secret: readable by whoever reads the store (the managers), never shown
    # by the REST API (NodeView lists fields one by one and leaves it out).
    agent_secret: str = Field(default="", repr=False)
    started: float = 0.0
    instance: str = ""  # random per agent process: detects two agents claiming one id


class NodeSpec(Document):
    """The durable, operator-owned half of a node."""

    id: str
    role: NodeRole = NodeRole.WORKER
    availability: Availability = Availability.ACTIVE
    labels: dict[str, str] = Field(default_factory=dict)
    joined: float = 0.0
