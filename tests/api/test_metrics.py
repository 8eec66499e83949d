"""`/metrics`: Prometheus text with the cluster's gauges and the manager's counters.

Here the counters are bumped by hand, to check the exposition; that the leader's
reconciler and the leader-change watch really move them is checked with real manager
processes in `tests/manager/test_metrics.py`."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from controlplane.models import TaskState
from tests.api.conftest import Api


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_count_nodes_tasks_and_reconcile_passes(cluster: Api) -> None:
    await cluster.add_node("n1", hostname="a")
    await cluster.add_node("n2", hostname="b", up=False)
    await cluster.add_task("t1", service="web", node_id="n1", state=TaskState.RUNNING)
    await cluster.add_task("t2", service="web", node_id="n1", state=TaskState.FAILED)
    cluster.context.metrics.reconcile_pass(0.02)
    cluster.context.metrics.leader_changes.inc()

    response = await cluster.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found[("shoal_nodes", (("status", "ready"),))] == 1
    assert found[("shoal_nodes", (("status", "down"),))] == 1
    assert found[("shoal_tasks", (("state", "running"),))] == 1
    assert found[("shoal_tasks", (("state", "failed"),))] == 1
    assert found[("shoal_reconcile_passes_total", ())] == 1
    assert found[("shoal_reconcile_duration_seconds_count", ())] == 1
    assert found[("shoal_leader_changes_total", ())] == 1
    assert found[("shoal_manager_is_leader", ())] == 0
