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


async def test_pages_cover_the_list_once_in_order(cluster: Api) -> None:
    await cluster.client.post("/services", json={"name": "web", "image": "nginx"})
    await cluster.add_node("n1aaa", hostname="alpha")
    for slot in range(1, 8):
        await cluster.add_task(f"t{slot}", service="web", node_id="n1aaa", slot=slot)
    whole = (await cluster.client.get("/tasks", params={"service": "web"})).json()
    assert [task["slot"] for task in whole] == list(range(1, 8))

    seen: list[dict[str, object]] = []
    params = {"service": "web", "limit": "3"}
    pages = 0
    while True:
        response = await cluster.client.get("/tasks", params=params)
        assert response.status_code == 200, response.text
        seen.extend(response.json())
        pages += 1
        cursor = response.headers.get("Shoal-Next-Cursor")
        if cursor is None:
            assert "Link" not in response.headers
            break
        assert 'rel="next"' in response.headers["Link"]
        params = {**params, "after": cursor}
    assert pages == 3
    assert seen == whole


async def test_a_page_cursor_survives_a_new_task(cluster: Api) -> None:
    await cluster.client.post("/services", json={"name": "web", "image": "nginx"})
    await cluster.add_node("n1aaa", hostname="alpha")
    for slot in (1, 2, 4):
        await cluster.add_task(f"t{slot}", service="web", node_id="n1aaa", slot=slot)
    first = await cluster.client.get("/tasks", params={"limit": "2"})
    assert [t["id"] for t in first.json()] == ["t1", "t2"]
    await cluster.add_task("t3", service="web", node_id="n1aaa", slot=3)
    after = first.headers["Shoal-Next-Cursor"]
    rest = await cluster.client.get("/tasks", params={"limit": "2", "after": after})
    assert [t["id"] for t in rest.json()] == ["t3", "t4"]


async def test_a_bad_cursor_or_limit_is_a_422_naming_it(cluster: Api) -> None:
    response = await cluster.client.get("/tasks", params={"after": "not-a-cursor"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "after"]
    response = await cluster.client.get("/tasks", params={"limit": "0"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]


async def test_the_list_carries_what_inspect_shows_and_follows_status_changes(
    cluster: Api,
) -> None:
    await seed(cluster)
    listed = {t["id"]: t for t in (await cluster.client.get("/tasks")).json()}
    for task_id, task in listed.items():
        assert task == (await cluster.client.get(f"/tasks/{task_id}")).json()
    await cluster.add_task("d1", service="db", node_id="n2bbb", slot=1, state=TaskState.RUNNING)
    again = {t["id"]: t for t in (await cluster.client.get("/tasks")).json()}
    assert listed["d1"]["state"] == "assigned"
    assert again["d1"]["state"] == "running"
