"""Tasks through the API: what runs where, filtered."""

from __future__ import annotations

from controlplane.models import TaskState
from controlplane.models.task import DesiredState
from tests.api.conftest import Api


async def seed(cluster: Api) -> None:
    await cluster.client.post("/services", json={"name": "web", "image": "nginx"})
    await cluster.client.post("/services", json={"name": "db", "image": "postgres"})
    await cluster.add_node("n1aaa", hostname="alpha")
    await cluster.add_node("n2bbb", hostname="beta")
    await cluster.add_task("w1", service="web", node_id="n1aaa", slot=1, state=TaskState.RUNNING)
    await cluster.add_task("w2", service="web", node_id="n2bbb", slot=2, state=TaskState.FAILED)
    await cluster.add_task(
        "w0",
        service="web",
        node_id="n2bbb",
        slot=1,
        state=TaskState.SHUTDOWN,
        desired=DesiredState.SHUTDOWN,
    )
    await cluster.add_task("d1", service="db", node_id="n2bbb", slot=1)


async def ids(cluster: Api, **params: str) -> list[str]:
    response = await cluster.client.get("/tasks", params=params)
    assert response.status_code == 200, response.text
    return sorted(task["id"] for task in response.json())


async def test_filters(cluster: Api) -> None:
    await seed(cluster)
    assert await ids(cluster) == ["d1", "w0", "w1", "w2"]
    assert await ids(cluster, service="web") == ["w0", "w1", "w2"]
    assert await ids(cluster, node="beta") == ["d1", "w0", "w2"]
    assert await ids(cluster, node="n1a") == ["w1"]
    assert await ids(cluster, service="web", desired_state="running") == ["w1", "w2"]
    assert await ids(cluster, state="failed") == ["w2"]
    assert await ids(cluster, state="assigned") == ["d1"]  # placed, not reported yet
    assert await ids(cluster, service="nope") == []


async def test_a_bad_filter_names_the_parameter(cluster: Api) -> None:
    response = await cluster.client.get("/tasks", params={"state": "sleeping"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "state"]


async def test_inspect(cluster: Api) -> None:
    await seed(cluster)
    task = (await cluster.client.get("/tasks/w1")).json()
    assert task["service"] == "web"
    assert task["node_id"] == "n1aaa"
    assert task["state"] == "running"
    assert task["image"] == "nginx"
    assert (await cluster.client.get("/tasks/zz")).status_code == 404
