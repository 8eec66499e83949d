"""`/swarm`'s `reachability` with two real managers on the file store: a manager that is
stopped (SIGSTOP: its lease lives on, so it stays listed) is shown unreachable by the
other within a few seconds, and reachable again once it is continued."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.manager.conftest import REPO, SHOAL, ManagerProcess

pytestmark = pytest.mark.slow

#: Far longer than the test: the stopped manager's record must outlive its silence.
LEASE_TTL = 60.0
#: The probe's cache (3 s) plus its timeout (0.75 s), with room for a busy machine.
WITHIN = 10.0


def poll(condition: Callable[[], Any], *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        time.sleep(0.1)


def reachability(manager: ManagerProcess, token: str) -> dict[str, str]:
    status, body = manager.call("GET", "/swarm", token=token)
    assert status == 200, body
    return {m["id"]: m["reachability"] for m in body["managers"]}


def swarm_info(manager: ManagerProcess, token: str, home: Path) -> str:
    """What `shoal swarm info` prints, asking `manager`."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "SHOAL_HOST": manager.url,
        "SHOAL_TOKEN": token,
    }
    done = subprocess.run(
        [*SHOAL, "swarm", "info"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def pair(
    start_manager: Callable[..., ManagerProcess], file_url: str
) -> Iterator[tuple[ManagerProcess, ManagerProcess]]:
    a = start_manager("manager-a", file_url, lease_ttl=LEASE_TTL, wait=False)
    b = start_manager("manager-b", file_url, lease_ttl=LEASE_TTL, wait=False)
    a.wait_ready()
    b.wait_ready()
    try:
        yield a, b
    finally:
        for manager in (a, b):  # a stopped process would not hear the fixture's SIGTERM
            if manager.proc is not None:
                manager.proc.send_signal(signal.SIGCONT)


def test_a_stopped_manager_is_unreachable_until_it_continues(
    pair: tuple[ManagerProcess, ManagerProcess], tmp_path: Path
) -> None:
    a, b = pair
    status, init = a.call("POST", "/swarm/init")
    assert status == 201, init
    token = init["api_token"]
    both = {"manager-a": "reachable", "manager-b": "reachable"}
    for manager in (a, b):
        poll(lambda m=manager: reachability(m, token) == both, within=WITHIN, what="both")

    assert a.proc is not None
    a.proc.send_signal(signal.SIGSTOP)  # alive, registered, and silent
    poll(
        lambda: reachability(b, token) == {"manager-a": "unreachable", "manager-b": "reachable"},
        within=WITHIN,
        what="manager-a shown unreachable",
    )
    assert "Managers:   2 (1 reachable, 1 unreachable)" in swarm_info(b, token, tmp_path)

    a.proc.send_signal(signal.SIGCONT)
    poll(lambda: reachability(b, token) == both, within=WITHIN, what="manager-a reachable again")
    assert reachability(a, token) == both
    assert "Managers:   2 (2 reachable)" in swarm_info(b, token, tmp_path)
