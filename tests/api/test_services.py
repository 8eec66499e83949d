"""Services through the API: the lifecycle a user drives, and the requests it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane import keys
from controlplane.models import TaskState
from controlplane.models.service import ServiceRecord
from controlplane.models.task import DesiredState
from tests.api.conftest import Api


def spec(name: str = "web", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "nginx:1.27", **fields}


async def test_create_list_inspect(cluster: Api) -> None:
    created = await cluster.client.post("/services", json=spec(replicas=3))
    assert created.status_code == 201, created.text
    service_id = created.json()["id"]
    assert created.json()["spec_version"] == 1
    assert created.headers["Location"] == "/services/web"

    listed = (await cluster.client.get("/services")).json()
    assert [(s["name"], s["replicas"]) for s in listed] == [("web", {"desired": 3, "running": 0})]
    for ref in ("web", service_id, service_id[:6]):
        inspected = await cluster.client.get(f"/services/{ref}")
        assert inspected.status_code == 200, ref
        assert inspected.json()["id"] == service_id
    missing = await cluster.client.get("/services/nope")
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]


async def test_a_taken_name_is_a_conflict(cluster: Api) -> None:
    assert (await cluster.client.post("/services", json=spec())).status_code == 201
    again = await cluster.client.post("/services", json=spec(image="redis"))
    assert again.status_code == 409
    assert "web" in again.json()["detail"]
    kv = await cluster.store.get(keys.service("web"))
    assert kv is not None
    assert ServiceRecord.load(kv.value).spec.image == "nginx:1.27"


async def test_running_counts_come_from_task_status(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec(replicas=2))
    await cluster.add_node("n1", hostname="a")
    await cluster.add_task("t1", service="web", node_id="n1", slot=1, state=TaskState.RUNNING)
    await cluster.add_task("t2", service="web", node_id="n1", slot=2, state=TaskState.STARTING)
    old = "t0"
    await cluster.add_task(
        old, service="web", node_id="n1", state=TaskState.RUNNING, desired=DesiredState.SHUTDOWN
    )
    listed = (await cluster.client.get("/services")).json()
    assert listed[0]["replicas"] == {"desired": 2, "running": 1}


async def test_update_keeps_the_previous_spec_and_rollback_restores_it(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec(replicas=2))
    updated = await cluster.client.post(
        "/services/web/update", json=spec(image="nginx:1.28", replicas=2)
    )
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["spec_version"] == 2
    assert body["spec"]["image"] == "nginx:1.28"
    assert body["previous_spec"]["image"] == "nginx:1.27"

    rolled = await cluster.client.post("/services/web/rollback")
    assert rolled.status_code == 200
    assert rolled.json()["spec_version"] == 3
    assert rolled.json()["spec"]["image"] == "nginx:1.27"
    assert rolled.json()["previous_spec"]["image"] == "nginx:1.28"
    stored = await cluster.store.get(keys.service("web"))
    assert stored is not None
    assert ServiceRecord.load(stored.value).spec.image == "nginx:1.27"


async def test_a_rollback_reports_rolling_back_until_the_leader_finishes(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec(replicas=2))
    await cluster.client.post("/services/web/update", json=spec(image="nginx:1.28", replicas=2))
    rolled = await cluster.client.post("/services/web/rollback")
    assert rolled.status_code == 200, rolled.text
    inspected = (await cluster.client.get("/services/web")).json()
    for body in (rolled.json(), inspected):
        assert body["spec"]["image"] == "nginx:1.27"
        assert body["update_state"] == "rolling back"
        assert body["update_message"] == "manually requested rollback"

    # a new spec meanwhile is an update: the rollback's state goes
    updated = await cluster.client.post(
        "/services/web/update", json=spec(image="nginx:1.29", replicas=2)
    )
    assert updated.status_code == 200, updated.text
    inspected = (await cluster.client.get("/services/web")).json()
    assert (inspected["update_state"], inspected["update_message"]) == ("", "")


async def test_an_unchanged_update_writes_nothing(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec())
    before = await cluster.store.get(keys.service("web"))
    same = await cluster.client.post("/services/web/update", json=spec())
    assert same.status_code == 200
    assert same.json()["spec_version"] == 1
    after = await cluster.store.get(keys.service("web"))
    assert before is not None
    assert after is not None
    assert after.mod_revision == before.mod_revision


async def test_update_with_a_stale_version_is_a_conflict(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec())
    await cluster.client.post("/services/web/scale", json={"replicas": 4})
    stale = await cluster.client.post("/services/web/update?version=1", json=spec(image="redis"))
    assert stale.status_code == 409
    assert "version 2" in stale.json()["detail"]
    fresh = await cluster.client.post("/services/web/update?version=2", json=spec(image="redis"))
    assert fresh.status_code == 200


async def test_scale(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec(replicas=1))
    scaled = await cluster.client.post("/services/web/scale", json={"replicas": 5})
    assert scaled.status_code == 200
    assert scaled.json()["replicas"]["desired"] == 5
    assert scaled.json()["spec_version"] == 2
    inspected = await cluster.client.get("/services/web")
    assert inspected.json()["spec"]["replicas"] == 5


async def test_a_global_service_does_not_scale(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec("agentd", mode="global"))
    refused = await cluster.client.post("/services/agentd/scale", json={"replicas": 2})
    assert refused.status_code == 409
    assert "global" in refused.json()["detail"]


async def test_rollback_without_a_previous_spec_is_a_conflict(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec())
    refused = await cluster.client.post("/services/web/rollback")
    assert refused.status_code == 409
    assert "previous" in refused.json()["detail"]


async def test_remove(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec())
    removed = await cluster.client.delete("/services/web")
    assert removed.status_code == 204
    assert await cluster.store.get(keys.service("web")) is None
    assert (await cluster.client.get("/services/web")).status_code == 404
    assert (await cluster.client.delete("/services/web")).status_code == 404
    assert (await cluster.client.post("/services", json=spec())).status_code == 201


async def test_update_cannot_rename_or_change_mode(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec())
    renamed = await cluster.client.post("/services/web/update", json=spec("api"))
    assert renamed.status_code == 422
    assert renamed.json()["detail"][0]["loc"] == ["body", "name"]
    moded = await cluster.client.post("/services/web/update", json=spec(mode="global"))
    assert moded.status_code == 422
    assert moded.json()["detail"][0]["loc"] == ["body", "mode"]


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"replicas": -1}, ["body", "replicas"]),
        ({"ports": [{"target": 80, "published": 70000}]}, ["body", "ports", 0, "published"]),
        ({"ports": [{"target": 0}]}, ["body", "ports", 0, "target"]),
        (
            {"placement": {"constraints": ["node.role==manager", "node.colour==red"]}},
            ["body", "placement", "constraints", 1],
        ),
        (
            {"placement": {"constraints": ["affinity:colour==red"]}},
            ["body", "placement", "constraints", 0],
        ),
        (
            {"placement": {"preferences": ["spread=node.nope"]}},
            ["body", "placement", "preferences", 0],
        ),
        ({"name": "-bad name"}, ["body", "name"]),
        ({"image": ""}, ["body", "image"]),
        ({"replicaz": 3}, ["body", "replicaz"]),
    ],
)
async def test_bad_specs_are_422_naming_the_field(
    cluster: Api, fields: dict[str, Any], loc: list[str | int]
) -> None:
    before = await cluster.store.list("")
    response = await cluster.client.post("/services", json=spec(**fields))
    assert response.status_code == 422, response.text
    assert any(error["loc"] == loc for error in response.json()["detail"]), response.json()
    after = await cluster.store.list("")
    assert after.revision == before.revision


async def test_an_unknown_constraint_key_is_explained(cluster: Api) -> None:
    response = await cluster.client.post(
        "/services", json=spec(placement={"constraints": ["node.colour==red"]})
    )
    message = response.json()["detail"][0]["msg"]
    assert "node.colour" in message
    assert "node.labels." in message


async def test_a_bad_scale_names_the_field(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec())
    response = await cluster.client.post("/services/web/scale", json={"replicas": -3})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "replicas"]


async def test_stack_filter(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec("shop_web", stack="shop"))
    await cluster.client.post("/services", json=spec("blog_web", stack="blog"))
    listed = (await cluster.client.get("/services", params={"stack": "shop"})).json()
    assert [s["name"] for s in listed] == ["shop_web"]
