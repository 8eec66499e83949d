"""Task health end to end: managers, agents and the harness's Docker Engine, on the file store.

What users see, as in swarm mode: a service whose healthcheck passes shows its task
`starting` (not counted as running) and then `running`; one whose check fails gets its
task failed with "unhealthy container", the container stopped and a new task started by
the restart policy; and a rolling update to a spec whose check fails is rolled back.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Cluster, poll
from tests.harness.images import shell_until_sigterm

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.parametrize("cluster", ["file"], indirect=True),
]

#: Becomes healthy about 2 s after it starts (the image has no /tmp: write at the root).
READY_LATER = shell_until_sigterm("(sleep 2; touch /ready) & :")
PASSING = {
    "test": ["CMD-SHELL", "test -e /ready"],
    "interval_seconds": 0.5,
    "timeout_seconds": 2,
    "retries": 2,
    "start_period_seconds": 30,  # failures while it gets ready do not count
}
FAILING = {
    "test": ["CMD-SHELL", "test -e /nope"],
    "interval_seconds": 0.5,
    "timeout_seconds": 2,
    "retries": 2,
}


def test_a_healthy_service_is_starting_then_running(cluster: Cluster) -> None:
    cluster.create("healthy", replicas=1, command=READY_LATER, healthcheck=PASSING)
    counted_while_starting: list[int] = []

    def starting() -> dict[str, Any] | None:
        tasks = [t for t in cluster.tasks("healthy") if t["state"] == "starting"]
        if tasks and tasks[0]["container_id"]:
            counted_while_starting.append(cluster.service("healthy")["replicas"]["running"])
            return tasks[0]
        return None

    task = poll(starting, within=60, what="the task starting", every=0.05)
    (container,) = cluster.running("healthy", 1, within=10)  # its container already runs
    assert cluster.inspect(container)["Config"]["Healthcheck"]["Test"] == PASSING["test"]
    assert counted_while_starting == [0]  # `service ls` does not count a starting task

    def running() -> dict[str, Any] | None:
        tasks = [t for t in cluster.tasks("healthy") if t["state"] == "running"]
        return tasks[0] if tasks else None

    ran = poll(running, within=60, what="the task running once healthy")
    assert ran["id"] == task["id"]
    assert cluster.inspect(container)["State"]["Health"]["Status"] == "healthy"
    assert cluster.service("healthy")["replicas"]["running"] == 1


def test_an_unhealthy_task_fails_and_is_replaced(cluster: Cluster) -> None:
    cluster.create(
        "sickly",
        replicas=1,
        command=shell_until_sigterm(),
        healthcheck=FAILING,
        restart_policy={"condition": "any", "delay": 0},
    )

    def two_failed() -> list[dict[str, Any]] | None:
        failed = [t for t in cluster.tasks("sickly") if t["state"] == "failed"]
        return failed if len(failed) >= 2 else None

    failed = poll(two_failed, within=90, what="two tasks failed unhealthy")
    assert {t["message"] for t in failed} == {"unhealthy container"}
    assert {t["slot"] for t in failed} == {1}  # replaced in its slot, by new tasks
    assert len({t["id"] for t in failed}) == len(failed)

    def stopped() -> bool:
        states = {c.id: c.state for c in cluster.containers("sickly", all=True)}
        return all(states.get(t["container_id"]) == "exited" for t in failed)

    poll(stopped, within=30, what="the unhealthy containers stopped")


def test_an_update_to_a_failing_healthcheck_rolls_back(cluster: Cluster) -> None:
    spec: dict[str, Any] = {
        "name": "rollme",
        "image": cluster.image,
        "init": True,
        "stop_grace_period": 2,
        "replicas": 2,
        "command": shell_until_sigterm(),
        "update_config": {"parallelism": 1, "monitor": 1.0, "failure_action": "rollback"},
    }
    cluster.call("POST", "/services", spec)
    cluster.running("rollme", 2, within=60)

    cluster.call("POST", "/services/rollme/update", {**spec, "healthcheck": FAILING})

    def rolled_back() -> dict[str, Any] | None:
        service = cluster.service("rollme")
        return service if service["update_state"] == "rolled back" else None

    service = poll(rolled_back, within=120, what="the update rolled back")
    assert service["spec"]["healthcheck"] is None
    containers = cluster.running("rollme", 2, within=60)
    for container in containers:
        assert cluster.inspect(container)["Config"].get("Healthcheck") is None
    tried = [t for t in cluster.tasks("rollme") if t["spec_version"] == 2]
    assert tried
    assert all(t["state"] == "failed" for t in tried), tried
    assert {t["message"] for t in tried} == {"unhealthy container"}
