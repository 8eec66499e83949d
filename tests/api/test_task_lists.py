"""`GET /tasks` keeps sorted lists (and their JSON) between calls: never a stale answer.

Each test reads a list first, so that it is kept, then changes what it shows in one way
(a status, a removed task, a new service, a new leader's task, a relist after the store
compacted its history) and reads it again.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from controlplane import keys
from controlplane.api.control import tasks as control
from controlplane.api.control.task_lists import select
from controlplane.models import LeaderRecord, TaskState, TaskStatus
from controlplane.models.task import DesiredState
from discovery.backends import memory
from tests.api.conftest import Api


async def listed(cluster: Api, **params: str) -> list[dict[str, Any]]:
    response = await cluster.client.get("/tasks", params=params)
    assert response.status_code == 200, response.text
    answer: list[dict[str, Any]] = response.json()
    return answer


def states(answer: list[dict[str, Any]]) -> dict[str, str]:
    return {task["id"]: task["state"] for task in answer}


async def seed(cluster: Api) -> None:
    await cluster.client.post("/services", json={"name": "web", "image": "nginx", "replicas": 2})
    await cluster.add_node("n1aaa", hostname="alpha")
    await cluster.add_task("w1", service="web", node_id="n1aaa", slot=1, state=TaskState.RUNNING)
    await cluster.add_task("w2", service="web", node_id="n1aaa", slot=2, state=TaskState.STARTING)


async def test_a_kept_list_is_reused_until_something_in_it_changes(cluster: Api) -> None:
    await seed(cluster)
    first = await listed(cluster, service="web")
    builds = cluster.context.task_lists.builds
    assert await listed(cluster, service="web") == first
    assert await listed(cluster, service="web", limit="1") == first[:1]
    assert cluster.context.task_lists.builds == builds  # kept: not built again
    await cluster.add_task("o1", service="other", node_id="n1aaa", slot=1)
    assert await listed(cluster, service="web") == first
    assert cluster.context.task_lists.builds == builds  # another service's change


async def test_a_status_change_shows_at_once(cluster: Api) -> None:
    await seed(cluster)
    assert states(await listed(cluster, service="web"))["w2"] == "starting"
    assert states(await listed(cluster))["w2"] == "starting"
    status = TaskStatus(task_id="w2", state=TaskState.RUNNING, timestamp=time.time())
    await cluster.store.put(keys.status("w2"), status.dump())
    await cluster.settle()
    assert states(await listed(cluster, service="web"))["w2"] == "running"
    assert states(await listed(cluster))["w2"] == "running"
    assert [t["id"] for t in await listed(cluster, service="web", state="running")] == [
        "w1",
        "w2",
    ]
    await cluster.store.delete(keys.status("w2"))
    await cluster.settle()
    assert states(await listed(cluster, service="web"))["w2"] == "assigned"


async def test_a_removed_task_is_gone_from_the_list(cluster: Api) -> None:
    await seed(cluster)
    assert [t["id"] for t in await listed(cluster, service="web")] == ["w1", "w2"]
    await listed(cluster)
    await cluster.store.delete(keys.task("n1aaa", "w1"))
    await cluster.settle()
    assert [t["id"] for t in await listed(cluster, service="web")] == ["w2"]
    assert [t["id"] for t in await listed(cluster)] == ["w2"]
    await cluster.store.delete(keys.task("n1aaa", "w2"))
    await cluster.settle()
    assert await listed(cluster, service="web") == []
    assert await listed(cluster) == []


async def test_a_new_service_and_its_tasks_show(cluster: Api) -> None:
    await seed(cluster)
    assert await listed(cluster, service="db") == []
    before = await listed(cluster)
    created = await cluster.client.post("/services", json={"name": "db", "image": "postgres"})
    await cluster.add_task("d1", service="db", node_id="n1aaa", slot=1, state=TaskState.RUNNING)
    assert [t["id"] for t in await listed(cluster, service="db")] == ["d1"]
    service_id = created.json()["id"]
    assert await listed(cluster, service=service_id) == await listed(cluster, service="db")
    assert await listed(cluster, service=service_id[:6]) == await listed(cluster, service="db")
    assert [t["id"] for t in await listed(cluster)] == ["d1"] + [t["id"] for t in before]


async def test_a_new_leaders_tasks_show(cluster: Api) -> None:
    """Leadership moves (a new term in the leader key), the new leader shuts a task down
    and places its replacement: both changes show in the lists read before."""
    await seed(cluster)
    await listed(cluster, service="web")
    await listed(cluster)
    leader = LeaderRecord(manager_id="m-other", api_url="http://other", term_started=time.time())
    await cluster.store.put(keys.LEADER, leader.dump())
    await cluster.add_task(
        "w1",
        service="web",
        node_id="n1aaa",
        slot=1,
        state=TaskState.SHUTDOWN,
        desired=DesiredState.SHUTDOWN,
    )
    await cluster.add_task("w3", service="web", node_id="n1aaa", slot=1)
    for answer in (await listed(cluster, service="web"), await listed(cluster)):
        by_id = {t["id"]: t for t in answer}
        assert by_id["w1"]["desired_state"] == "shutdown"
        assert by_id["w3"]["state"] == "assigned"


async def test_no_stale_list_after_a_relist(cluster: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store compacted what the mirror needed, so the mirror listed it again: a task
    removed meanwhile is gone from the list kept before."""
    await seed(cluster)
    await listed(cluster, service="web")
    await listed(cluster)
    listings = cluster.mirror.listings
    monkeypatch.setattr(memory, "HISTORY", 2)
    await cluster.store.delete(keys.task("n1aaa", "w1"))
    for index in range(10):
        await cluster.store.put(f"unrelated/{index}", b"")
    await cluster.settle()
    assert cluster.mirror.listings > listings
    assert [t["id"] for t in await listed(cluster, service="web")] == ["w2"]
    assert [t["id"] for t in await listed(cluster)] == ["w2"]


async def test_filters_and_pages_match_a_walk_over_every_task(cluster: Api) -> None:
    """Every filter and page read from the kept lists is what the walk answers."""
    rng = random.Random(3)
    for name in ("web", "db"):
        await cluster.client.post("/services", json={"name": name, "image": "nginx"})
    for node_id in ("n1aaa", "n2bbb"):
        await cluster.add_node(node_id, hostname=node_id)
    for index in range(40):
        await cluster.add_task(
            f"t{index:02d}",
            service=rng.choice(["web", "db"]),
            node_id=rng.choice(["n1aaa", "n2bbb"]),
            slot=rng.randint(1, 5),
            state=rng.choice([None, TaskState.RUNNING, TaskState.FAILED]),
            desired=rng.choice(list(DesiredState)),
        )
    view = cluster.mirror
    lists = cluster.context.task_lists
    for _ in range(60):
        query = control.TaskFilter(
            service=rng.choice([None, "web", "db"]),
            node=rng.choice([None, "n1aaa", "n2bbb"]),
            desired_state=rng.choice([None, *DesiredState]),
            state=rng.choice([None, TaskState.RUNNING, TaskState.FAILED, TaskState.ASSIGNED]),
        )
        limit = rng.choice([None, 1, 3, 7])
        walked = control.list_tasks(view, query)
        after = None
        if walked and rng.random() < 0.5:
            after = control.cursor_of(rng.choice(walked).task)
        kept = lists.get(view, query.service)
        assert kept is not None
        assert select(kept, query, limit=limit, after=after) == control.page(
            walked, limit=limit, after=after
        )
