"""The built-in filters, one module each, and their default order.

The order matters twice: a node is rejected by the first filter it fails, and that is
the filter it is counted against in an explanation. So the order goes from what the user
cannot change for this task to what more capacity would fix.
"""

from __future__ import annotations

from scheduler.filters.affinity import AffinityFilter
from scheduler.filters.base import Filter, FilterBase
from scheduler.filters.constraint import ConstraintFilter
from scheduler.filters.host_ports import HostPortsFilter
from scheduler.filters.max_replicas import MaxReplicasFilter
from scheduler.filters.platform import PlatformFilter
from scheduler.filters.ready import ReadyFilter
from scheduler.filters.resources import ResourcesFilter

DEFAULT_FILTERS: tuple[str, ...] = (
    # Always first: a down, drained or paused node takes nothing, whatever else holds,
    # and "not available (drained)" is the truest reason to give for it.
    "ready",
    # The image cannot run there at all; no label or capacity change helps.
    "platform",
    # The operator's explicit rules: a node excluded by them is reported as excluded,
    # not as full. Static within a pass, so cheap and shared between requests.
    "constraint",
    # Co-location rules: like constraints, but over what runs there, so dynamic.
    "affinity",
    # The service's own per-node cap: a cheap count.
    "max-replicas",
    # Host-mode port conflicts: moving the other task is the fix, not adding capacity.
    "host-ports",
    # Last: "lacks 512 MiB memory" is then said only of nodes that would otherwise take
    # the task, so the count is how many nodes more capacity would actually help.
    "resources",
)

__all__ = [
    "DEFAULT_FILTERS",
    "AffinityFilter",
    "ConstraintFilter",
    "Filter",
    "FilterBase",
    "HostPortsFilter",
    "MaxReplicasFilter",
    "PlatformFilter",
    "ReadyFilter",
    "ResourcesFilter",
]
