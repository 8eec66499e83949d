"""The per-pass view of a node: what it is, and what the pass has put on it so far.

The manager builds one `NodeView` per node from the store (the `nodes/` heartbeat and the
`node-specs/` document, plus the tasks assigned to it) at the start of a pass. The pipeline
works on copies and calls `reserve(request)` after each placement, so the tenth replica of
a service sees the first nine: their resources, their host ports, their count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from scheduler.request import PlacementRequest, Platform, Resources

Role = Literal["worker", "manager"]
Availability = Literal["active", "pause", "drain"]


@dataclass(slots=True)
class NodeView:
    """One node as the scheduler sees it during one pass. Mutable: see `reserve`."""

    id: str
    hostname: str = ""
    addr: str = ""
    role: Role = "worker"
    availability: Availability = "active"
    ready: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    engine_labels: dict[str, str] = field(default_factory=dict)
    platform: Platform = field(default_factory=lambda: Platform("linux", "amd64"))
    capacity: Resources = field(default_factory=Resources)
    reserved: Resources = field(default_factory=Resources)
    tasks_by_service: dict[str, int] = field(default_factory=dict)
    total_tasks: int = 0
    host_ports_in_use: set[tuple[str, int]] = field(default_factory=set)
    images: set[str] = field(default_factory=set)
    recent_failures: dict[str, int] = field(default_factory=dict)

    @property
    def available(self) -> Resources:
        """Capacity minus what running and newly placed tasks have reserved."""
        return self.capacity - self.reserved

    def reserve(self, request: PlacementRequest) -> None:
        """Account for `request` placed on this node (the only mutation in a pass)."""
        self.reserved = self.reserved + request.resources
        self.tasks_by_service[request.service] = self.tasks_by_service.get(request.service, 0) + 1
        self.total_tasks += 1
        self.host_ports_in_use.update(request.host_ports)
        if request.image:
            self.images.add(request.image)

    def copy(self) -> NodeView:
        """A copy whose mutable parts are independent of this one."""
        return NodeView(
            id=self.id,
            hostname=self.hostname,
            addr=self.addr,
            role=self.role,
            availability=self.availability,
            ready=self.ready,
            labels=self.labels,
            engine_labels=self.engine_labels,
            platform=self.platform,
            capacity=self.capacity,
            reserved=self.reserved,
            tasks_by_service=dict(self.tasks_by_service),
            total_tasks=self.total_tasks,
            host_ports_in_use=set(self.host_ports_in_use),
            images=set(self.images),
            recent_failures=self.recent_failures,
        )
