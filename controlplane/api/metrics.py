"""Prometheus metrics of one manager, served at `/metrics`.

Counts of nodes by status and tasks by state are computed from the mirror when scraped,
so they are never stale and cost nothing between scrapes; every manager reports the
same cluster-wide figures, and `shoal_manager_is_leader` tells which one leads. Event
counters (leader changes seen, reconcile passes and their latency) are per process:
the reconcile ones move only on the leader.

Each manager has its own registry (not the process-global default), so several
managers in one test process never collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from controlplane.api.control.swarm import summarise
from controlplane.api.control.view import ClusterView

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _ClusterCollector:
    """Gauges read from the mirror at scrape time."""

    def __init__(self, view: ClusterView, is_leader: Callable[[], bool]) -> None:
        self.view = view
        self.is_leader = is_leader

    def collect(self) -> Iterator[Any]:
        summary = summarise(self.view)
        nodes = GaugeMetricFamily("shoal_nodes", "Nodes by status", labels=["status"])
        for status, count in summary.nodes_by_status.items():
            nodes.add_metric([status], count)
        yield nodes
        tasks = GaugeMetricFamily("shoal_tasks", "Tasks by observed state", labels=["state"])
        for state, count in summary.tasks_by_state.items():
            tasks.add_metric([state], count)
        yield tasks
        yield GaugeMetricFamily("shoal_services", "Services", value=summary.services)
        yield GaugeMetricFamily(
            "shoal_managers", "Managers registered in the store", value=len(summary.managers)
        )
        yield GaugeMetricFamily(
            "shoal_manager_is_leader",
            "1 when this manager holds the leader lease",
            value=1 if self.is_leader() else 0,
        )


class ManagerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.leader_changes = Counter(
            "shoal_leader_changes",
            "New leader terms this manager has seen (including its own)",
            registry=self.registry,
        )
        self.terms_won = Counter(
            "shoal_leader_terms_won", "Terms this manager has led", registry=self.registry
        )
        self.reconcile_passes = Counter(
            "shoal_reconcile_passes", "Reconcile passes run by this manager", registry=self.registry
        )
        self.reconcile_seconds = Histogram(
            "shoal_reconcile_duration_seconds",
            "Time one reconcile pass took, plan and apply",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self._tracking = False

    def track(self, view: ClusterView, is_leader: Callable[[], bool]) -> None:
        """Report the cluster's gauges from `view` (once per registry)."""
        if not self._tracking:
            self.registry.register(_ClusterCollector(view, is_leader))
            self._tracking = True

    def reconcile_pass(self, seconds: float) -> None:
        """Record one reconcile pass (the reconciler's hook)."""
        self.reconcile_passes.inc()
        self.reconcile_seconds.observe(seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
