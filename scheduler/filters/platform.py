"""platform: the node's os/arch is one the request's image supports.

An empty list accepts any node; an empty os or arch in an entry is a wildcard. Arch
names are normalised (`x86_64` is `amd64`, `aarch64` is `arm64`).
"""

from __future__ import annotations

from collections.abc import Hashable

from scheduler.constraints import normalize_arch
from scheduler.filters.base import FilterBase
from scheduler.nodes import NodeView
from scheduler.request import PlacementRequest
from scheduler.units import nodes_phrase


class PlatformFilter(FilterBase):
    name = "platform"
    dynamic = False

    def check(self, request: PlacementRequest, node: NodeView) -> bool:
        if not request.platforms:
            return True
        os = node.platform.os.lower()
        arch = normalize_arch(node.platform.arch)
        return any(
            (not want.os or want.os.lower() == os)
            and (not want.arch or normalize_arch(want.arch) == arch)
            for want in request.platforms
        )

    def cache_key(self, request: PlacementRequest) -> Hashable:
        return request.platforms

    def explain(self, request: PlacementRequest, count: int) -> str:
        wanted = ", ".join(f"{p.os or '*'}/{p.arch or '*'}" for p in request.platforms)
        return f"{nodes_phrase(count, 'does', 'do')} not match platform {wanted}"
