"""Two `shoal manager` processes on one store: exactly one leads, and when it dies the
other takes over within the lease TTL plus 2 s, with nothing lost."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.harness.polling import poll
from tests.manager.conftest import ManagerProcess

pytestmark = pytest.mark.slow

TTL = 2.0
FAILOVER_BOUND = TTL + 2.0


def leaders(managers: list[ManagerProcess]) -> list[str]:
    return [m.name for m in managers if m.running and m.health()["leader"]]


def swarm_leader(manager: ManagerProcess, token: str) -> str | None:
    status, body = manager.call("GET", "/swarm", token=token)
    assert status == 200, body
    return None if body["leader"] is None else str(body["leader"]["manager_id"])


@pytest.fixture(params=["file_url", "etcd_url"])
def discovery(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


def test_one_leads_and_the_other_takes_over_when_it_is_killed(
    start_manager: Callable[..., ManagerProcess], discovery: str
) -> None:
    a = start_manager("manager-a", discovery, lease_ttl=TTL, wait=False)
    b = start_manager("manager-b", discovery, lease_ttl=TTL, wait=False)
    a.wait_ready()
    b.wait_ready()
    managers = [a, b]
    [leader_name] = poll(lambda: leaders(managers), within=10, what="a leader")

    status, init = a.call("POST", "/swarm/init")
    assert status == 201, init
    token = init["api_token"]
    status, _ = b.call("POST", "/services", token=token, body={"name": "web", "image": "nginx"})
    assert status == 201

    # Both managers agree on who leads, and list both managers as registered.
    poll(
        lambda: {swarm_leader(m, token) for m in managers} == {leader_name},
        within=5,
        what="agreement",
    )
    for manager in managers:
        _, info = manager.call("GET", "/swarm", token=token)
        assert {m["id"] for m in info["managers"]} == {"manager-a", "manager-b"}
    assert leaders(managers) == [leader_name]  # still exactly one

    leader = a if leader_name == a.name else b
    survivor = b if leader is a else a
    leader.kill()  # SIGKILL: no resignation, the lease must expire
    killed_at = time.monotonic()
    poll(
        lambda: survivor.health()["leader"], within=FAILOVER_BOUND + 5, what="failover", every=0.05
    )
    took = time.monotonic() - killed_at
    assert took <= FAILOVER_BOUND, f"failover took {took:.1f} s (bound {FAILOVER_BOUND} s)"

    poll(lambda: swarm_leader(survivor, token) == survivor.name, within=5, what="new leader seen")
    status, service = survivor.call("GET", "/services/web", token=token)
    assert status == 200, service  # nothing was lost with the killed manager
    _, info = survivor.call("GET", "/swarm", token=token)
    assert [m["id"] for m in info["managers"]] == [survivor.name]


def test_a_clean_stop_hands_over_at_once(
    start_manager: Callable[..., ManagerProcess], file_url: str
) -> None:
    slow_ttl = 10.0  # far longer than the hand-over may take
    a = start_manager("manager-a", file_url, lease_ttl=slow_ttl)
    poll(lambda: a.health()["leader"], within=10, what="a leads")
    b = start_manager("manager-b", file_url, lease_ttl=slow_ttl)
    assert not b.health()["leader"]
    stopped_at = time.monotonic()
    a.stop()  # SIGTERM: resign, deregister
    assert a.proc is None
    poll(lambda: b.health()["leader"], within=slow_ttl, what="hand-over")
    assert time.monotonic() - stopped_at < slow_ttl / 2
    log = a.log_path.read_text()
    assert "stopped" in log
    assert "Traceback" not in log
