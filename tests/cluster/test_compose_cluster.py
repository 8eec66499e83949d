"""docker-compose.test.yml for real: the whole cluster in containers, on etcd and on Consul.

Each store gets its own compose project (module-scoped `project`); the checks below run in
the order written on it, as a user would: up, deploy, stop the leading manager, stop an
agent, tear down. The API is reached only through the managers' ports published on
127.0.0.1; what runs is counted on the engine by the labels the agents write.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from controlplane.agent.runtime.base import LABEL_NODE, LABEL_SLOT
from tests.cluster.conftest import Project, http
from tests.harness.images import shell_until_sigterm
from tests.harness.polling import poll

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    # the first test's setup may build the images from nothing: debootstrap, wheels, builds
    pytest.mark.timeout(900),
    pytest.mark.parametrize("project", ["etcd", "consul"], indirect=True),
]

SERVICE = "web"
REPLICAS = 6
AGENTS = ("agent-1", "agent-2", "agent-3")


def nodes_by_agent(project: Project) -> dict[str, dict[str, Any]]:
    """The nodes by their agent's compose service (the `name` label the file gives each)."""
    return {node["labels"].get("name", node["id"]): node for node in project.call("GET", "/nodes")}


def slots(containers: list[dict[str, Any]]) -> list[int]:
    return sorted(int(c["Labels"][LABEL_SLOT]) for c in containers)


def six_running_once_each(project: Project) -> list[dict[str, Any]] | None:
    """The service's running containers when there are exactly 6, one per slot."""
    running = project.task_containers(SERVICE)
    return running if slots(running) == list(range(1, REPLICAS + 1)) else None


def running_tasks(project: Project) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = project.call("GET", f"/tasks?service={SERVICE}")
    return [t for t in tasks if t["state"] == "running" and t["desired_state"] == "running"]


def test_up_gives_one_leader_two_managers_three_ready_nodes(project: Project) -> None:
    for manager in ("manager-1", "manager-2"):
        status, summary = http("GET", project.url(manager) + "/swarm", token=project.token)
        assert status == 200, summary
        assert summary["cluster_id"] == project.cluster_id
        assert summary["leader"] is not None
        assert summary["leader"]["manager_id"] in ("manager-1", "manager-2")
        assert sorted(m["id"] for m in summary["managers"]) == ["manager-1", "manager-2"]
        assert summary["nodes"]["ready"] == 3, summary["nodes"]
    leaders = [m for m in ("manager-1", "manager-2") if project.leads(m)]
    assert len(leaders) == 1, leaders
    nodes = nodes_by_agent(project)
    assert sorted(nodes) == list(AGENTS)
    assert {n["status"] for n in nodes.values()} == {"ready"}
    assert sorted(n["hostname"] for n in nodes.values()) == list(AGENTS)
    assert len({n["addr"] for n in nodes.values()}) == 3, "each agent has its own address"


def test_a_second_up_keeps_the_cluster(project: Project) -> None:
    """The bootstrap runs again and finds the cluster initialised: `up` still succeeds."""
    nodes = {n["id"] for n in project.call("GET", "/nodes")}
    project.compose("up", "-d", "--wait", "--no-build", "--pull", "never")
    assert project.call("GET", "/swarm")["cluster_id"] == project.cluster_id
    again = project.call("GET", "/nodes")
    assert {n["id"] for n in again} == nodes
    assert {n["status"] for n in again} == {"ready"}


def test_six_replicas_spread_over_the_three_agents(project: Project) -> None:
    project.call(
        "POST",
        "/services",
        {
            "name": SERVICE,
            "image": project.busybox,
            "replicas": REPLICAS,
            "command": shell_until_sigterm(),
            "stop_grace_period": 2,
        },
    )
    running = poll(lambda: six_running_once_each(project), within=120, what="6 running containers")
    nodes = nodes_by_agent(project)
    per_node = Counter(c["Labels"][LABEL_NODE] for c in running)
    assert per_node == {nodes[a]["id"]: 2 for a in AGENTS}, per_node
    poll(lambda: len(running_tasks(project)) == REPLICAS, within=30, what="the API: 6 running")


def test_stopping_the_leading_manager_hands_over(project: Project) -> None:
    leader = poll(
        lambda: next((m for m in project.running_managers() if project.leads(m)), None),
        within=10,
        what="a leading manager",
    )
    other = next(m for m in project.running_managers() if m != leader)
    project.compose("stop", leader)
    project.stopped.add(leader)
    poll(
        lambda: project.leads(other),
        within=project.lease_ttl + 2,
        what=f"{other} leads after {leader} stopped",
    )
    summary = project.call("GET", "/swarm")
    assert summary["leader"]["manager_id"] == other
    # the service keeps its 6 tasks, one per slot, and nothing is started twice
    deadline = time.monotonic() + 2 * project.lease_ttl
    while time.monotonic() < deadline:
        running = project.task_containers(SERVICE)
        assert slots(running) == list(range(1, REPLICAS + 1)), slots(running)
        time.sleep(0.5)
    assert len(running_tasks(project)) == REPLICAS
    assert len(project.task_containers(SERVICE, all=True)) == REPLICAS


def test_stopping_an_agent_moves_its_tasks_to_the_other_two(project: Project) -> None:
    nodes = nodes_by_agent(project)
    gone = nodes["agent-3"]["id"]
    assert sum(1 for c in project.task_containers(SERVICE) if c["Labels"][LABEL_NODE] == gone)
    project.compose("stop", "agent-3")
    project.stopped.add("agent-3")

    def replaced() -> list[dict[str, Any]] | None:
        running = six_running_once_each(project)
        if running is None or any(c["Labels"][LABEL_NODE] == gone for c in running):
            return None
        return running

    running = poll(replaced, within=120, what="agent-3's tasks replaced on agent-1 and agent-2")
    per_node = Counter(c["Labels"][LABEL_NODE] for c in running)
    assert set(per_node) == {nodes["agent-1"]["id"], nodes["agent-2"]["id"]}
    assert sorted(per_node.values()) == [3, 3], per_node
    assert not [c for c in project.task_containers(all=True) if c["Labels"][LABEL_NODE] == gone]
    poll(
        lambda: (
            {t["node_id"] for t in running_tasks(project)} == set(per_node)
            and len(running_tasks(project)) == REPLICAS
        ),
        within=30,
        what="the API: 6 running tasks on agent-1 and agent-2",
    )


def test_down_leaves_nothing_behind(project: Project) -> None:
    assert project.task_containers()  # something to clean up
    project.compose("down", "-v")
    assert project.project_objects() == {"containers": [], "networks": [], "volumes": []}
    assert project.task_containers(all=True) == []
