"""Builders for scheduler tests: nodes and requests with short, readable defaults."""

from __future__ import annotations

from typing import Any

from scheduler import NodeView, PlacementRequest, Platform, Resources

MiB = 1 << 20
GiB = 1 << 30
CPU = 1_000_000_000


def node(node_id: str = "n1", *, cpus: float = 4, memory: int = 8 * GiB, **fields: Any) -> NodeView:
    """A ready, active linux/amd64 worker with `cpus` CPUs and `memory` bytes."""
    fields.setdefault("hostname", f"host-{node_id}")
    fields.setdefault("addr", "10.0.0.1")
    fields.setdefault("platform", Platform("linux", "amd64"))
    return NodeView(
        id=node_id, capacity=Resources(nano_cpus=int(cpus * CPU), memory_bytes=memory), **fields
    )


def request(service: str = "web", slot: int | None = 1, **fields: Any) -> PlacementRequest:
    return PlacementRequest(service=service, slot=slot, **fields)


def replicas(service: str, count: int, **fields: Any) -> list[PlacementRequest]:
    return [PlacementRequest(service=service, slot=slot, **fields) for slot in range(1, count + 1)]
