"""Bodies that are not a JSON object get a 422 that says so, never a 500, and write nothing.

Each endpoint that takes a body is sent JSON that does not parse, a JSON array, a JSON
object under the wrong content type, and no body at all; the answer names what is
wrong in a sentence, and the store's revision has not moved.
"""

from __future__ import annotations

import pytest

from controlplane import keys
from tests.api.conftest import Api

#: (path, whether it needs an initialised cluster and the API token)
ENDPOINTS = [
    ("/swarm/init", False),
    ("/swarm/join", True),
    ("/services", True),
    ("/stacks", True),
]

#: (name, body bytes, Content-Type or None, what the message says)
BAD_BODIES = [
    ("not JSON", b'{"name": ', "application/json", "the body is not valid JSON"),
    ("an array", b'[{"name": "web"}]', "application/json", "must be a JSON object, not an array"),
    ("a string", b'"web"', "application/json", "must be a JSON object, not a string"),
    (
        "text/plain",
        b'{"name": "web", "image": "nginx"}',
        "text/plain",
        "Content-Type: application/json (not text/plain)",
    ),
    (
        "a form",
        b"name=web&image=nginx",
        "application/x-www-form-urlencoded",
        "Content-Type: application/json (not application/x-www-form-urlencoded)",
    ),
    (
        "no content type",
        b'{"name": "web", "image": "nginx"}',
        None,
        "Content-Type: application/json (it had none)",
    ),
]


async def revision(api: Api) -> int:
    return (await api.store.list("")).revision


@pytest.mark.parametrize(("path", "initialised"), ENDPOINTS)
@pytest.mark.parametrize(
    ("name", "content", "content_type", "message"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
async def test_a_body_that_is_not_a_json_object_is_refused_and_writes_nothing(
    api: Api,
    path: str,
    initialised: bool,
    name: str,
    content: bytes,
    content_type: str | None,
    message: str,
) -> None:
    if initialised:
        await api.init()
    before = await revision(api)
    headers = {"Content-Type": content_type} if content_type else {}
    response = await api.client.post(path, content=content, headers=headers)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"][0] == "body"
    assert message in error["msg"], error
    assert await revision(api) == before, f"{name} sent to {path} wrote to the store"
    if not initialised:
        assert await api.store.get(keys.CLUSTER) is None


@pytest.mark.parametrize("path", ["/swarm/join", "/services", "/stacks"])
async def test_a_missing_body_is_named(cluster: Api, path: str) -> None:
    before = await revision(cluster)
    response = await cluster.client.post(path, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["msg"].startswith("the body is missing"), error
    assert await revision(cluster) == before


async def test_a_json_content_type_with_parameters_or_a_json_suffix_is_json(cluster: Api) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.shoal+json"):
        response = await cluster.client.post(
            "/services", content=b"[]", headers={"Content-Type": content_type}
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["msg"] == "the body must be a JSON object, not an array"


async def test_a_field_error_keeps_its_own_message(cluster: Api) -> None:
    response = await cluster.client.post("/services", json={"name": "web", "image": 7})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "image"]
    assert "JSON object" not in error["msg"]
