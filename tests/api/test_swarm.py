"""`swarm init`, `swarm join` and join-token rotation, as a user meets them."""

from __future__ import annotations

import re
from pathlib import Path

from controlplane import keys
from controlplane.agent.join import joined_identity
from controlplane.models import ClusterRecord, NodeSpec, TaskState
from tests.api.conftest import Api

TOKEN = re.compile(r"^SHOAL-1-[a-z0-9]{12}-[a-z2-7]{40}$")


def join_body(token: str, node_id: str | None = None) -> dict[str, object]:
    return {"token": token, "node_id": node_id, "hostname": "node-1", "addr": "10.0.0.7"}


async def test_init_creates_the_cluster_once(api: Api) -> None:
    first = await api.client.post("/swarm/init")
    assert first.status_code == 201
    body = first.json()
    for token in (body["api_token"], body["join_tokens"]["worker"], body["join_tokens"]["manager"]):
        assert TOKEN.match(token), token
        assert body["cluster_id"][:12] in token
    auth = {"Authorization": f"Bearer {body['api_token']}"}

    again = await api.client.post("/swarm/init", headers=auth)
    assert again.status_code == 409
    assert body["cluster_id"] in again.json()["detail"]
    anonymous = await api.client.post("/swarm/init")
    assert anonymous.status_code == 401
    assert "already initialised" in anonymous.json()["detail"]


async def test_the_store_keeps_only_token_hashes(cluster: Api) -> None:
    kv = await cluster.store.get(keys.CLUSTER)
    assert kv is not None
    for token in cluster.tokens.values():
        assert token.encode() not in kv.value
        secret = token.rsplit("-", 1)[1]
        assert secret.encode() not in kv.value
    record = ClusterRecord.load(kv.value)
    assert record.api_token_hash.startswith("sha256:")


async def test_join_with_the_worker_token_writes_the_node_spec(cluster: Api) -> None:
    response = await cluster.client.post("/swarm/join", json=join_body(cluster.tokens["worker"]))
    assert response.status_code == 200, response.text
    grant = response.json()
    assert grant["role"] == "worker"
    assert grant["discovery"] == cluster.url
    kv = await cluster.store.get(keys.node_spec(grant["node_id"]))
    assert kv is not None
    assert NodeSpec.load(kv.value).role == "worker"
    info = await cluster.client.get("/swarm")
    assert grant["cluster_id"] == info.json()["cluster_id"]


async def test_join_with_the_manager_token_grants_the_manager_role(cluster: Api) -> None:
    body = join_body(cluster.tokens["manager"], node_id="n-manager-1")
    response = await cluster.client.post("/swarm/join", json=body)
    assert response.status_code == 200
    assert response.json() == {**response.json(), "node_id": "n-manager-1", "role": "manager"}


async def test_rejoining_keeps_the_node_id_and_its_spec(cluster: Api) -> None:
    first = await cluster.client.post("/swarm/join", json=join_body(cluster.tokens["worker"]))
    node_id = first.json()["node_id"]
    drained = await cluster.client.post(f"/nodes/{node_id}/update", json={"availability": "drain"})
    assert drained.status_code == 200
    again = await cluster.client.post(
        "/swarm/join", json=join_body(cluster.tokens["manager"], node_id=node_id)
    )
    assert again.json()["node_id"] == node_id
    assert again.json()["role"] == "worker"  # the operator's spec, not the token, decides
    kv = await cluster.store.get(keys.node_spec(node_id))
    assert kv is not None
    assert NodeSpec.load(kv.value).availability == "drain"


async def test_a_bad_join_token_gets_401_and_writes_nothing(cluster: Api) -> None:
    before = await cluster.store.list("")
    for token in (
        "nonsense",
        cluster.tokens["api"],  # the API token is not a join token
        cluster.tokens["worker"][:-1] + "x",
        "SHOAL-1-aaaaaaaaaaaa-" + "b" * 40,
    ):
        response = await cluster.client.post("/swarm/join", json=join_body(token, "n-1"))
        assert response.status_code == 401, token
        assert response.json()["detail"]
    after = await cluster.store.list("")
    assert after.revision == before.revision
    assert await cluster.store.get(keys.node_spec("n-1")) is None


async def test_join_refuses_a_node_id_that_is_not_one_key_segment(cluster: Api) -> None:
    body = join_body(cluster.tokens["worker"], node_id="../cluster")
    response = await cluster.client.post("/swarm/join", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "node_id"]


async def test_join_before_init_is_refused(api: Api) -> None:
    response = await api.client.post("/swarm/join", json=join_body("SHOAL-1-x-y"))
    assert response.status_code == 409
    assert "not initialised" in response.json()["detail"]


async def test_rotating_a_join_token_retires_the_old_one(cluster: Api) -> None:
    old = cluster.tokens["worker"]
    rotated = await cluster.client.post("/swarm/join-token/rotate", json={"role": "worker"})
    assert rotated.status_code == 200
    new = rotated.json()["token"]
    assert new != old
    assert TOKEN.match(new)
    refused = await cluster.client.post("/swarm/join", json=join_body(old))
    assert refused.status_code == 401
    admitted = await cluster.client.post("/swarm/join", json=join_body(new))
    assert admitted.status_code == 200
    manager = await cluster.client.post("/swarm/join", json=join_body(cluster.tokens["manager"]))
    assert manager.status_code == 200  # the other role's token is untouched


async def test_swarm_summarises_the_cluster(cluster: Api) -> None:
    await cluster.add_node("n1", hostname="a")
    await cluster.add_node("n2", hostname="b", up=False)
    await cluster.add_task("t1", service="web", node_id="n1", state=TaskState.RUNNING)
    response = await cluster.client.get("/swarm")
    assert response.status_code == 200
    info = response.json()
    assert info["nodes"] == {"ready": 1, "down": 1}
    assert info["tasks"] == {"running": 1}
    assert info["leader"] is None
    assert info["managers"] == []


async def test_health_needs_no_token(api: Api) -> None:
    response = await api.client.get("/health")
    assert response.status_code == 200
    assert response.json()["manager_id"] == "m-test"
    assert response.json()["leader"] is False
    assert response.json()["initialised"] is False


async def test_join_writes_the_node_labels_with_its_spec(cluster: Api) -> None:
    body = {**join_body(cluster.tokens["worker"]), "labels": {"zone": "a", "disk": "ssd"}}
    response = await cluster.client.post("/swarm/join", json=body)
    assert response.status_code == 200, response.text
    node_id = response.json()["node_id"]
    kv = await cluster.store.get(keys.node_spec(node_id))
    assert kv is not None
    assert kv.create_revision == kv.mod_revision  # one write, labels included
    assert NodeSpec.load(kv.value).labels == {"zone": "a", "disk": "ssd"}

    again = {**join_body(cluster.tokens["worker"], node_id=node_id), "labels": {"zone": "b"}}
    assert (await cluster.client.post("/swarm/join", json=again)).status_code == 200
    kv = await cluster.store.get(keys.node_spec(node_id))
    assert kv is not None
    assert NodeSpec.load(kv.value).labels == {"zone": "a", "disk": "ssd"}  # the spec's own


async def test_a_bad_label_key_on_join_is_a_422_and_writes_nothing(cluster: Api) -> None:
    body = {**join_body(cluster.tokens["worker"], node_id="n-lbl"), "labels": {"bad key!": "x"}}
    response = await cluster.client.post("/swarm/join", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "labels"]
    assert await cluster.store.get(keys.node_spec("n-lbl")) is None


async def test_an_agent_joining_with_labels_finds_them_on_its_spec(
    cluster: Api, tmp_path: Path
) -> None:
    identity = await joined_identity(
        tmp_path,
        manager="http://manager",
        token=cluster.tokens["worker"],
        hostname="node-9",
        addr="10.0.0.9",
        labels={"zone": "c"},
        transport=cluster.client._transport,
    )
    kv = await cluster.store.get(keys.node_spec(identity.node_id))
    assert kv is not None
    assert NodeSpec.load(kv.value).labels == {"zone": "c"}
    assert kv.create_revision == kv.mod_revision
