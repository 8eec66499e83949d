"""The routing mesh end to end: two managers and three agents as real processes (on
127.0.0.2, .3 and .4), etcd, and the harness's Docker Engine.

Every request here is a new TCP connection to a node's loopback address on the
published port: the mesh on that node relays it to one of the service's containers,
through the port Docker published on the container's own node. The body is the
container's hostname, so the tests see which container answered.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from controlplane.agent.runtime.base import LABEL_NODE
from tests.e2e import conftest as e2e
from tests.e2e.conftest import Cluster, poll, start_cluster
from tests.harness.images import http_hostname_server

pytestmark = [pytest.mark.docker, pytest.mark.etcd, pytest.mark.slow]

ADDRS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")

e2e_image = e2e.e2e_image  # the busybox image fixture the e2e tests use


@pytest.fixture(scope="module")
def mesh_cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    dockerd: str,
    docker_client: Any,
    e2e_image: str,
) -> Iterator[Cluster]:
    """Two managers and three agents (mesh on, the default) on a fresh etcd prefix."""
    url = request.getfixturevalue("etcd_server").url()
    made = start_cluster(
        "etcd",
        url,
        Path(tmp_path_factory.mktemp("mesh-cluster")),
        engine=docker_client,
        image=e2e_image,
        docker_host=dockerd,
    )
    try:
        yield made
    finally:
        made.shut_down()


@pytest.fixture
def cluster(mesh_cluster: Cluster) -> Iterator[Cluster]:
    """The shared cluster; each test's services are removed afterwards."""
    yield mesh_cluster
    if not any(m.running for m in mesh_cluster.managers):
        return
    mesh_cluster.remove_services()


def port_free_everywhere() -> int:
    """A TCP port no process holds on any of the three node addresses."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((ADDRS[0], 0))
            port: int = probe.getsockname()[1]
        try:
            for addr in ADDRS:
                with socket.socket() as other:
                    other.bind((addr, port))
        except OSError:
            continue
        return port
    raise AssertionError("no port free on all three node addresses")


def get(addr: str, port: int) -> str:
    """One HTTP request on a new connection; the body (a container's hostname)."""
    request = urllib.request.Request(f"http://{addr}:{port}/", headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.read().decode().strip())


def try_get(addr: str, port: int) -> str | None:
    try:
        return get(addr, port)
    except OSError:
        return None


def hostnames(cluster: Cluster, service: str, count: int) -> set[str]:
    running = cluster.running(service, count, within=90)
    return {str(cluster.inspect(c)["Config"]["Hostname"]) for c in running}


def reach(port: int, expected: set[str], *, per_node: int = 10) -> list[str | None]:
    """`per_node` requests to each node's address; the answers once they reach exactly
    `expected` (the mesh follows task changes) and every one succeeded."""

    def round_of_requests() -> list[str | None] | None:
        answers = [try_get(addr, port) for addr in ADDRS for _ in range(per_node)]
        return answers if set(answers) == expected else None

    return poll(round_of_requests, within=45, what=f"requests on {port} reach {expected}")


class Load:
    """Requests to the three addresses in turn, one at a time, until stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answered: Counter[str] = Counter()
        self.failures: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            addr = ADDRS[turn % len(ADDRS)]
            turn += 1
            try:
                get(addr, self.port)
                self.answered[addr] += 1
            except OSError as exc:
                self.failures.append((time.monotonic(), addr, repr(exc)))
            time.sleep(0.01)


def test_an_ingress_port_answers_on_every_node_and_through_scaling(cluster: Cluster) -> None:
    port = port_free_everywhere()
    cluster.create(
        "hello",
        replicas=3,
        command=http_hostname_server(8080),
        ports=[{"target": 8080, "published": port}],
    )
    three = hostnames(cluster, "hello", 3)
    answers = reach(port, three)
    assert len(answers) == 30
    assert Counter(answers).keys() == three  # every container answered; none failed

    with Load(port) as load:
        cluster.call("POST", "/services/hello/scale", {"replicas": 1})
        one = hostnames(cluster, "hello", 1)
        reach(port, one)
        cluster.call("POST", "/services/hello/scale", {"replicas": 3})
        back = hostnames(cluster, "hello", 3)
        reach(port, back)
    assert set(load.answered) == set(ADDRS)
    assert sum(load.answered.values()) > 30
    # Only a request in flight inside a container as it stops may fail (the load sends
    # one at a time, and two containers stop): none of the others.
    assert len(load.failures) <= 2, load.failures


def test_host_mode_ports_answer_only_where_their_tasks_run(cluster: Cluster) -> None:
    port = port_free_everywhere()
    host_port = [{"target": 8080, "published": port, "mode": "host"}]
    cluster.create("solo", replicas=1, command=http_hostname_server(8080), ports=host_port)
    [solo] = cluster.running("solo", 1, within=60)
    solo_addr = cluster.call("GET", f"/nodes/{solo.labels[LABEL_NODE]}")["addr"]
    solo_name = str(cluster.inspect(solo)["Config"]["Hostname"])
    assert poll(lambda: try_get(solo_addr, port), within=30, what="solo answers") == solo_name
    for addr in set(ADDRS) - {solo_addr}:  # no mesh for host-mode ports
        with pytest.raises(ConnectionRefusedError), socket.create_connection((addr, port), 2):
            pass

    # Another service asking for the same host port never shares a node with solo, nor
    # does it put two of its own tasks on one node; a third task has nowhere to go.
    cluster.create("pair", replicas=3, command=http_hostname_server(8080), ports=host_port)
    pair = cluster.running("pair", 2, within=60)
    pair_nodes = [c.labels[LABEL_NODE] for c in pair]
    assert len(set(pair_nodes)) == 2
    assert solo.labels[LABEL_NODE] not in pair_nodes

    def pending_reason() -> str | None:
        waiting = [t for t in cluster.tasks("pair") if t["state"] == "pending"]
        return waiting[0]["message"] if waiting else None

    reason = poll(pending_reason, within=30, what="the third task of pair pending")
    assert "host port" in reason
    assert str(port) in reason
    for container in pair:
        addr = cluster.call("GET", f"/nodes/{container.labels[LABEL_NODE]}")["addr"]
        name = str(cluster.inspect(container)["Config"]["Hostname"])
        answer = poll(partial(try_get, addr, port), within=30, what=f"{addr} answers")
        assert answer == name


def test_the_mesh_keeps_forwarding_while_no_manager_runs(cluster: Cluster) -> None:
    """The data plane does not need the control plane: with every manager killed, the
    agents forward with the last tables. (Last in this module: it restarts managers.)"""
    port = port_free_everywhere()
    cluster.create(
        "steady",
        replicas=3,
        command=http_hostname_server(8080),
        ports=[{"target": 8080, "published": port}],
    )
    three = hostnames(cluster, "steady", 3)
    reach(port, three)
    for manager in cluster.managers:
        manager.kill()
    time.sleep(2 * cluster.lease_ttl)  # the leader's lease is gone: no leader at all
    answers = [get(addr, port) for addr in ADDRS for _ in range(6)]  # none may fail
    assert set(answers) == three
    for manager in cluster.managers:
        manager.start(wait=False)
    for manager in cluster.managers:
        manager.wait_ready()
    poll(cluster.leader, within=30, what="a leader again")
