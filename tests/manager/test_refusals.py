"""Refusals from a real `shoal manager` process on the file store, read back from the store.

The API suite (`tests/api`) checks these in-process over the memory store; here the
token checks and a malformed body go through uvicorn to a manager whose store is a file
another process (this test) reads: no token and a wrong token get 401, a wrong join
token gets 401 and no node is written, a body that is not JSON gets 422 and no service.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable

from controlplane import keys
from discovery import open_store
from tests.manager.conftest import ManagerProcess

PREFIXES = (keys.NODE_SPECS, keys.NODES, keys.SERVICES, keys.TASKS)


async def written(file_url: str) -> dict[str, list[str]]:
    store = await open_store(file_url)
    try:
        return {prefix: [kv.key for kv in (await store.list(prefix)).items] for prefix in PREFIXES}
    finally:
        await store.close()


def post_raw(manager: ManagerProcess, path: str, body: bytes, token: str) -> tuple[int, object]:
    request = urllib.request.Request(f"{manager.url}{path}", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_bad_tokens_get_401_and_write_nothing(
    start_manager: Callable[..., ManagerProcess], file_url: str
) -> None:
    manager = start_manager("manager-a", file_url)
    status, init = manager.call("POST", "/swarm/init")
    assert status == 201, init
    token = init["api_token"]
    wrong = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    service = {"name": "web", "image": "nginx"}

    for given in (None, wrong, "not-a-token"):
        for method, path, body in (
            ("GET", "/services", None),
            ("GET", "/swarm", None),
            ("POST", "/services", service),
            ("POST", "/swarm/join-token/rotate", {"role": "worker"}),
        ):
            status, answer = manager.call(method, path, token=given, body=body)
            assert status == 401, (method, path, given, answer)
            assert "token" in answer["detail"], answer

    # The cluster is initialised: a second init needs the token too, and changes nothing.
    status, answer = manager.call("POST", "/swarm/init", token=wrong)
    assert status == 401, answer
    assert "already initialised" in answer["detail"]

    join = {"token": init["join_tokens"]["worker"][:-4] + "zzzz", "hostname": "h", "addr": "a"}
    status, answer = manager.call("POST", "/swarm/join", body=join)
    assert status == 401, answer
    join["token"] = token  # the API token is not a join token
    status, answer = manager.call("POST", "/swarm/join", body=join)
    assert status == 401, answer

    status, answer = post_raw(manager, "/services", b'{"name": "web", ', token)
    assert status == 422, answer

    assert await written(file_url) == {prefix: [] for prefix in PREFIXES}
    # The right tokens still work, and what they write is there: the checks above could fail.
    status, _ = manager.call("POST", "/services", token=token, body=service)
    assert status == 201
    join["token"] = init["join_tokens"]["worker"]
    status, joined = manager.call("POST", "/swarm/join", body=join)
    assert status == 200, joined
    found = await written(file_url)
    assert found[keys.SERVICES] == [keys.service("web")]
    assert found[keys.NODE_SPECS] == [keys.node_spec(joined["node_id"])]
    assert manager.tail().count("Traceback") == 0
