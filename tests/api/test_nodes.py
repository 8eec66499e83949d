"""Nodes through the API: status from heartbeats, operator changes, removal."""

from __future__ import annotations

from controlplane import keys
from controlplane.models import NodeRole, NodeSpec
from tests.api.conftest import Api


async def test_list_shows_ready_and_down_nodes(cluster: Api) -> None:
    await cluster.add_node("n1aaa", hostname="alpha")
    await cluster.add_node("n2bbb", hostname="beta", up=False)
    nodes = (await cluster.client.get("/nodes")).json()
    by_id = {node["id"]: node for node in nodes}
    assert by_id["n1aaa"]["status"] == "ready"
    assert by_id["n1aaa"]["hostname"] == "alpha"
    assert by_id["n1aaa"]["engine_version"] == "27.0"
    assert by_id["n1aaa"]["availability"] == "active"
    assert by_id["n2bbb"]["status"] == "down"


async def test_inspect_by_id_prefix_or_hostname(cluster: Api) -> None:
    await cluster.add_node("n1aaa", hostname="alpha")
    await cluster.add_node("n1bbb", hostname="beta")
    for ref in ("n1aaa", "n1a", "alpha"):
        response = await cluster.client.get(f"/nodes/{ref}")
        assert response.status_code == 200, ref
        assert response.json()["id"] == "n1aaa"
    ambiguous = await cluster.client.get("/nodes/n1")
    assert ambiguous.status_code == 400
    assert "ambiguous" in ambiguous.json()["detail"]
    assert (await cluster.client.get("/nodes/zzz")).status_code == 404


async def test_drain_and_labels(cluster: Api) -> None:
    await cluster.add_node("n1", hostname="alpha")
    drained = await cluster.client.post(
        "/nodes/alpha/update",
        json={"availability": "drain", "labels_add": {"zone": "a", "ssd": "1"}},
    )
    assert drained.status_code == 200, drained.text
    assert drained.json()["availability"] == "drain"
    assert drained.json()["labels"] == {"zone": "a", "ssd": "1"}
    kv = await cluster.store.get(keys.node_spec("n1"))
    assert kv is not None
    stored = NodeSpec.load(kv.value)
    assert stored.availability == "drain"
    assert stored.labels == {"zone": "a", "ssd": "1"}

    patched = await cluster.client.patch(
        "/nodes/n1", json={"availability": "active", "labels_remove": ["ssd"]}
    )
    assert patched.json()["availability"] == "active"
    assert patched.json()["labels"] == {"zone": "a"}
    listed = (await cluster.client.get("/nodes")).json()
    assert listed[0]["availability"] == "active"


async def test_a_bad_update_names_the_field_and_writes_nothing(cluster: Api) -> None:
    await cluster.add_node("n1", hostname="alpha")
    before = await cluster.store.list("")
    for body, loc in (
        ({"availability": "asleep"}, ["body", "availability"]),
        ({"labels_add": {"bad key": "x"}}, ["body", "labels_add", "bad key", "[key]"]),
        ({"colour": "red"}, ["body", "colour"]),
    ):
        response = await cluster.client.post("/nodes/n1/update", json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == loc, response.json()
    assert (await cluster.store.list("")).revision == before.revision


async def test_updating_a_node_that_never_got_a_spec_creates_one(cluster: Api) -> None:
    await cluster.add_node("n1", hostname="alpha")
    await cluster.store.delete(keys.node_spec("n1"))
    await cluster.settle()
    response = await cluster.client.post("/nodes/n1/update", json={"availability": "pause"})
    assert response.status_code == 200
    kv = await cluster.store.get(keys.node_spec("n1"))
    assert kv is not None
    assert NodeSpec.load(kv.value).availability == "pause"


async def test_removing_an_up_node_needs_force(cluster: Api) -> None:
    await cluster.add_node("n1", hostname="alpha")
    refused = await cluster.client.delete("/nodes/n1")
    assert refused.status_code == 409
    assert "force" in refused.json()["detail"]
    assert await cluster.store.get(keys.node_spec("n1")) is not None
    forced = await cluster.client.delete("/nodes/n1", params={"force": "true"})
    assert forced.status_code == 204
    assert await cluster.store.get(keys.node_spec("n1")) is None
    assert await cluster.store.get(keys.node("n1")) is None
    assert (await cluster.client.get("/nodes/n1")).status_code == 404


async def test_removing_a_down_node(cluster: Api) -> None:
    await cluster.add_node("n2", hostname="beta", up=False)
    assert (await cluster.client.delete("/nodes/n2")).status_code == 204
    assert await cluster.store.get(keys.node_spec("n2")) is None


async def test_manager_status(cluster: Api) -> None:
    await cluster.add_node("n1", hostname="alpha", role=NodeRole.MANAGER)
    await cluster.add_node("n2", hostname="beta")
    nodes = {n["id"]: n for n in (await cluster.client.get("/nodes")).json()}
    assert nodes["n1"]["role"] == "manager"
    assert nodes["n1"]["manager_status"] == "unreachable"  # no manager runs as n1
    assert nodes["n2"]["manager_status"] is None


async def test_a_node_the_mirror_has_not_seen_yet_can_be_updated(cluster: Api) -> None:
    # Written through another manager a moment ago: this one's mirror may lag.
    await cluster.store.put(keys.node_spec("fresh1"), NodeSpec(id="fresh1").dump())
    response = await cluster.client.post("/nodes/fresh1/update", json={"availability": "drain"})
    assert response.status_code == 200
    assert response.json()["availability"] == "drain"


async def test_updating_an_unknown_node_is_404_and_writes_nothing(cluster: Api) -> None:
    before = (await cluster.store.list("")).revision
    response = await cluster.client.post("/nodes/ghost/update", json={"availability": "drain"})
    assert response.status_code == 404
    assert (await cluster.store.list("")).revision == before
    assert (await cluster.client.delete("/nodes/ghost")).status_code == 404
