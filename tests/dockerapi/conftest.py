"""A real cluster whose managers serve the Docker API, and the real `docker` CLI.

Two `shoal manager` processes (each with `--docker-api` on its own loopback port) and
three `shoal agent` processes (127.0.0.2-4, the harness's Docker Engine) on a file
store, built with the end-to-end tests' `Cluster` (tests/e2e/conftest.py), shared by
this package's tests. `docker_cli` runs /usr/local/bin/docker against a manager with a
private `DOCKER_CONFIG`, so nothing of the host's docker configuration leaks in.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import HEARTBEAT, LEASE_TTL, Cluster, Manager, poll
from tests.harness.images import ensure_busybox_image
from tests.harness.process import free_port

DOCKER = "/usr/local/bin/docker"


class DockerApiManager(Manager):
    """A manager that also serves the Docker API on 127.0.0.1:<docker_port>."""

    def __init__(self, *, name: str, discovery: str, log_dir: Path, lease_ttl: float) -> None:
        super().__init__(name=name, discovery=discovery, log_dir=log_dir, lease_ttl=lease_ttl)
        self.docker_port = free_port()
        self.docker_host = f"tcp://127.0.0.1:{self.docker_port}"
        self.argv = [*self.argv, "--docker-api", f"127.0.0.1:{self.docker_port}"]


@pytest.fixture(scope="package")
def swarm(
    tmp_path_factory: pytest.TempPathFactory, dockerd: str, docker_client: Any
) -> Iterator[Cluster]:
    image = ensure_busybox_image(docker_client)
    tmp = tmp_path_factory.mktemp("dockerapi-cluster")
    cluster = Cluster(
        store="file",
        discovery=f"file://{tmp}/store",
        tmp=tmp,
        engine=docker_client,
        image=image,
        docker_host=dockerd,
        lease_ttl=LEASE_TTL,
        node_ttl=3 * HEARTBEAT,
        slack=0.0,
    )
    try:
        for index in (1, 2):
            manager = DockerApiManager(
                name=f"manager-{index}",
                discovery=cluster.discovery,
                log_dir=tmp / "logs",
                lease_ttl=LEASE_TTL,
            )
            cluster.managers.append(manager)
            manager.start(wait=False)
        for manager in cluster.managers:
            manager.wait_ready()
        poll(cluster.leader, within=30, what="a leader")
        cluster.init()
        for _ in range(3):
            cluster.start_agent(wait=False)
        for agent in cluster.agents:
            cluster.wait_agent(agent)
        yield cluster
    finally:
        cluster.shut_down()


@pytest.fixture(autouse=True)
def tidy(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test: every service (and so every Docker API container) removed."""
    yield
    if "swarm" not in request.fixturenames:
        return
    cluster: Cluster = request.getfixturevalue("swarm")
    if not any(m.running for m in cluster.managers):
        return
    cluster.remove_services()


DockerCli = Callable[..., subprocess.CompletedProcess[str]]


def cli_env(manager: Manager, *, home: Path, config: Path) -> dict[str, str]:
    """The environment of a docker CLI that talks to `manager`'s Docker API only."""
    assert isinstance(manager, DockerApiManager)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "DOCKER_HOST": manager.docker_host,
        "DOCKER_CONFIG": str(config),
    }


@pytest.fixture
def docker_cli(swarm: Cluster, tmp_path: Path) -> DockerCli:
    """`docker_cli(*args, manager=None, check=True)`: the real CLI against a manager."""
    config = tmp_path / "docker-config"
    config.mkdir()

    def run(
        *args: str, manager: Manager | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = cli_env(manager or swarm.managers[0], home=tmp_path, config=config)
        done = subprocess.run(
            [DOCKER, *args], capture_output=True, text=True, env=env, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {done.returncode}:\n{done.stderr}\n{swarm.logs()}"
            )
        return done

    return run
