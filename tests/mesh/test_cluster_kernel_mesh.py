"""The routing mesh in kernel mode end to end: two managers and three agents started
with `--mesh-forwarding kernel` (127.0.0.2, .3 and .4), etcd, and the harness's Docker
Engine. Each agent programs its own nftables table; the kernel forwards every request to
a container's published port, and stopping the agents removes their tables.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.agent.mesh.nftables import table_name
from tests.e2e import conftest as e2e
from tests.e2e.conftest import Cluster, start_cluster
from tests.harness.images import http_hostname_server
from tests.mesh.test_cluster_mesh import ADDRS, Load, hostnames, port_free_everywhere, reach
from tests.mesh.test_kernel_mesh import nft_works

pytestmark = [pytest.mark.docker, pytest.mark.etcd, pytest.mark.slow]

e2e_image = e2e.e2e_image
nft_available = nft_works  # fails under CI=true without nft or root, skips elsewhere


def tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def kernel_cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    dockerd: str,
    docker_client: Any,
    e2e_image: str,
) -> Iterator[Cluster]:
    """Two managers and three agents whose mesh forwards in the kernel."""
    url = request.getfixturevalue("etcd_server").url()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SHOAL_MESH_FORWARDING", "kernel")  # the agents' --mesh-forwarding
        made = start_cluster(
            "etcd",
            url,
            Path(tmp_path_factory.mktemp("kernel-mesh-cluster")),
            engine=docker_client,
            image=e2e_image,
            docker_host=dockerd,
        )
    try:
        yield made
    finally:
        made.shut_down()
    left = tables()
    assert not [a for a in ADDRS if table_name(a) in left], left  # clean stops delete them


def test_the_kernel_forwards_every_node_to_the_tasks_through_scaling(
    kernel_cluster: Cluster,
) -> None:
    cluster = kernel_cluster
    port = port_free_everywhere()
    cluster.create(
        "hello",
        replicas=3,
        command=http_hostname_server(8080),
        ports=[{"target": 8080, "published": port}],
    )
    three = hostnames(cluster, "hello", 3)
    answers = reach(port, three)
    assert Counter(answers).keys() == three
    for addr in ADDRS:  # the kernel forwards, not a listener in the agent
        listing = subprocess.run(
            ["nft", "list", "table", "ip", table_name(addr)], capture_output=True, text=True
        ).stdout
        assert f"ip daddr {addr} tcp dport {port} dnat" in listing

    with Load(port) as load:
        cluster.call("POST", "/services/hello/scale", {"replicas": 1})
        one = hostnames(cluster, "hello", 1)
        reach(port, one)
        settled = time.monotonic()
        time.sleep(1.0)
    assert set(load.answered) == set(ADDRS)
    # The kernel cannot retry a connection that a stopping container's port accepts and
    # closes (the relay does): new connections fail only while the two containers stop,
    # until the tables drop them, and none once the mesh reached the survivor.
    failed_at = [at for at, _, _ in load.failures]
    assert all(at < settled for at in failed_at), load.failures
    assert not failed_at or max(failed_at) - min(failed_at) < 5.0, load.failures
    cluster.remove_services()
