"""Two `shoal manager` processes on one etcd take `POST /services` at the same time: every
service gets its own published port, and one explicit port asked of both goes to one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.manager.conftest import ManagerProcess

pytestmark = pytest.mark.slow

PER_MANAGER = 8


def at_once(calls: list[Callable[[], tuple[int, Any]]]) -> list[tuple[int, Any]]:
    """Run every call in its own thread, all released together; their answers in order."""
    start = threading.Barrier(len(calls))
    answers: list[tuple[int, Any]] = [(0, None)] * len(calls)

    def run(index: int) -> None:
        start.wait()
        answers[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def create(manager: ManagerProcess, token: str, body: dict[str, Any]) -> Callable[[], Any]:
    return lambda: manager.call("POST", "/services", token=token, body=body)


def test_two_managers_creating_at_once_hand_out_distinct_ports(
    start_manager: Callable[..., ManagerProcess], etcd_url: str
) -> None:
    a = start_manager("manager-a", etcd_url, wait=False)
    b = start_manager("manager-b", etcd_url, wait=False)
    a.wait_ready()
    b.wait_ready()
    status, init = a.call("POST", "/swarm/init")
    assert status == 201, init
    token = init["api_token"]

    calls = [
        create(
            manager,
            token,
            {"name": f"{manager.name}-{i}", "image": "nginx", "ports": [{"target": 80}]},
        )
        for i in range(PER_MANAGER)
        for manager in (a, b)
    ]
    answers = at_once(calls)
    assert [status for status, _ in answers] == [201] * len(calls), answers
    status, services = b.call("GET", "/services", token=token)
    assert status == 200, services
    ports = {s["spec"]["name"]: s["spec"]["ports"][0]["published"] for s in services}
    assert len(ports) == len(calls)
    assert len(set(ports.values())) == len(calls), ports

    port = [{"target": 80, "published": 8080}]
    answers = at_once(
        [
            create(a, token, {"name": "one", "image": "nginx", "ports": port}),
            create(b, token, {"name": "two", "image": "nginx", "ports": port}),
        ]
    )
    assert sorted(status for status, _ in answers) == [201, 409], answers
    [(_, won)] = [answer for answer in answers if answer[0] == 201]
    [(_, lost)] = [answer for answer in answers if answer[0] == 409]
    assert "8080" in lost["detail"]
    assert repr(won["name"]) in lost["detail"]
