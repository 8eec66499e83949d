"""The routing mesh's table of one service (`routes/<service>`), written by the leader.

For each ingress-published TCP port of the service it lists the endpoints of the
service's tasks that are running right now, on nodes that are up. Every agent watches
`routes/` and forwards connections to `<its address>:<published port>` to those
endpoints, so a published port answers on every node whichever nodes run the tasks.
The leader rewrites a table only when its content changes, so agents hear of endpoint
changes, not of every status report.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from controlplane.models.base import Document


class Backend(BaseModel):
    """One running task's endpoint for a published port."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: int = Field(ge=1, le=65535)
    task_id: str = ""
    node_id: str = ""


class PortRoute(BaseModel):
    """Where connections to one published port go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    published_port: int = Field(ge=1, le=65535)
    target_port: int = Field(ge=1, le=65535)
    protocol: str = "tcp"
    backends: tuple[Backend, ...] = ()


class RouteTable(Document):
    """`routes/<service>`: the service's published ports and their running endpoints."""

    service: str
    ports: tuple[PortRoute, ...] = ()
