"""The compose cluster (docker-compose.test.yml) brought up for real, once per store.

`compose_images` (session) runs scripts/build-images against the harness's Docker Engine,
so the images are built once per session (the base image and its tarball are cached
between sessions). `project` (module scope, parametrised indirectly by store name: `etcd`
or `consul`) brings the whole project up with `docker compose up -d --wait` under a
unique project name, with the managers' API ports chosen free on 127.0.0.1 and the agents
driving the harness's engine (`DOCKER_SOCKET`); at the end it runs `down -v` whatever
happened, and removes any task container left behind so the engine stays clean for
others (the tests themselves assert that `down -v` leaves none).

Without the docker CLI, its compose plugin, debootstrap or root, these tests skip locally
and fail under CI=true, like every other test that needs a real server.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controlplane.agent.runtime.base import LABEL_CLUSTER
from tests.harness.dockerd import SOCKET
from tests.harness.images import ensure_busybox_image
from tests.harness.process import free_port, in_ci, require_binary

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.test.yml"
BUILD_IMAGES = REPO / "scripts" / "build-images"
COMPOSE_LABEL = "com.docker.compose.project"

#: What docker-compose.test.yml sets, and the stores' shortest leases.
LEASE_TTL = {"etcd": 2.0, "consul": 10.0}
DISCOVERY = {"etcd": "etcd://etcd:2379/shoal", "consul": "consul://consul:8500/shoal"}


#: A failed build, kept so that every later test fails at once with it: pytest sets up a
#: failed session fixture again for each test, and a build takes minutes.
_build_failure: list[str] = []


def _unavailable(message: str) -> None:
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class Images:
    names: dict[str, str]  # SHOAL_IMAGE, ETCD_IMAGE, CONSUL_IMAGE
    busybox: str
    build_seconds: float


@pytest.fixture(scope="session")
def compose_images(dockerd: str, docker_client: Any) -> Images:
    """scripts/build-images run once against the harness's engine; the images' names."""
    docker = require_binary("docker", why="the compose cluster tests drive the docker CLI")
    require_binary("debootstrap", why="scripts/build-images makes the base image with it")
    env = {**os.environ, "DOCKER_HOST": dockerd}
    version = subprocess.run(
        [docker, "compose", "version"], env=env, capture_output=True, text=True, check=False
    )
    if version.returncode != 0:
        _unavailable("the docker compose plugin is not installed; run scripts/install-deps")
    if _build_failure:
        pytest.fail(_build_failure[0], pytrace=False)
    started = time.monotonic()
    built = subprocess.run(
        [str(BUILD_IMAGES)], env=env, capture_output=True, text=True, check=False, timeout=900
    )
    seconds = time.monotonic() - started
    if built.returncode != 0:
        _build_failure.append(f"scripts/build-images failed:\n{built.stderr[-4000:]}")
        pytest.fail(_build_failure[0], pytrace=False)
    names = dict(line.split("=", 1) for line in built.stdout.split() if "=" in line)
    print(f"\nscripts/build-images took {seconds:.1f} s")
    return Images(names=names, busybox=ensure_busybox_image(docker_client), build_seconds=seconds)


def http(
    method: str, url: str, *, token: str | None = None, body: object | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw) if raw else None
        except ValueError:
            return exc.code, raw.decode(errors="replace")


@dataclass
class Project:
    """One compose project of docker-compose.test.yml on the harness's engine."""

    store: str
    name: str
    env: dict[str, str]
    ports: dict[str, int]  # compose service -> its API port on 127.0.0.1
    engine: Any  # docker.DockerClient
    busybox: str  # the tasks' image
    token: str = ""
    cluster_id: str = ""
    stopped: set[str] = field(default_factory=set)
    up_seconds: float = 0.0

    @property
    def lease_ttl(self) -> float:
        return LEASE_TTL[self.store]

    def compose(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self._argv(), *args]
        done = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, check=False, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"`{' '.join(argv[2:])}` failed ({done.returncode}):\n{done.stderr[-3000:]}\n"
                + self.logs()
            )
        return done

    def _argv(self) -> list[str]:
        return ["docker", "compose", "-f", str(COMPOSE_FILE), "-p", self.name]

    def logs(self, tail: int = 25) -> str:
        done = subprocess.run(
            [*self._argv(), "logs", "--no-color", "--tail", str(tail)],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        return done.stdout[-12000:]

    def url(self, manager: str) -> str:
        return f"http://127.0.0.1:{self.ports[manager]}"

    def running_managers(self) -> list[str]:
        return [m for m in self.ports if m not in self.stopped]

    def call(self, method: str, path: str, body: object | None = None) -> Any:
        """A call through the first running manager's published port."""
        manager = self.running_managers()[0]
        status, answer = http(method, self.url(manager) + path, token=self.token, body=body)
        assert 200 <= status < 300, f"{method} {path} on {manager}: {status} {answer}"
        return answer

    def leads(self, manager: str) -> bool:
        try:
            status, body = http("GET", self.url(manager) + "/health")
        except OSError:
            return False
        return status == 200 and bool(body.get("leader"))

    def read_token(self) -> str:
        done = self.compose("exec", "-T", "agent-1", "cat", "/run/shoal/join/api-token")
        return done.stdout.strip()

    def task_containers(self, service: str | None = None, *, all: bool = False) -> list[Any]:
        """Containers on the engine labelled with this cluster (and `service`)."""
        labels = [f"{LABEL_CLUSTER}={self.cluster_id}"]
        if service is not None:
            labels.append(f"com.shoal.service={service}")
        found: list[Any] = self.engine.api.containers(all=all, filters={"label": labels})
        return found

    def project_objects(self) -> dict[str, list[str]]:
        """The project's containers, networks and volumes the engine still has."""
        label = f"{COMPOSE_LABEL}={self.name}"
        api = self.engine.api
        containers = api.containers(all=True, filters={"label": label})
        volumes = api.volumes(filters={"label": label})["Volumes"] or []
        return {
            "containers": [c["Names"][0] for c in containers],
            "networks": [n["Name"] for n in api.networks(filters={"label": label})],
            "volumes": [v["Name"] for v in volumes],
        }


@pytest.fixture(scope="module")
def project(
    request: pytest.FixtureRequest, dockerd: str, docker_client: Any, compose_images: Images
) -> Iterator[Project]:
    """The whole cluster up on `request.param`'s store, initialised, its token read."""
    store: str = request.param
    name = f"shoaltest-{store}-{uuid.uuid4().hex[:8]}"
    ports = {"manager-1": free_port(), "manager-2": free_port()}
    env = {
        **os.environ,
        **compose_images.names,
        "DOCKER_HOST": dockerd,
        "DOCKER_SOCKET": str(SOCKET),
        "SHOAL_DISCOVERY": DISCOVERY[store],
        "SHOAL_MANAGER_1_PORT": str(ports["manager-1"]),
        "SHOAL_MANAGER_2_PORT": str(ports["manager-2"]),
    }
    made = Project(
        store=store,
        name=name,
        env=env,
        ports=ports,
        engine=docker_client,
        busybox=compose_images.busybox,
    )
    started = time.monotonic()
    try:
        made.compose("up", "-d", "--wait", "--no-build", "--pull", "never", timeout=600)
        made.up_seconds = time.monotonic() - started
        made.token = made.read_token()
        summary = made.call("GET", "/swarm")
        made.cluster_id = summary["cluster_id"]
        yield made
    finally:
        made.compose("down", "-v", "--remove-orphans", check=False, timeout=300)
        if made.cluster_id:  # what down left (the tests assert there is none) goes too
            for container in made.task_containers(all=True):
                docker_client.api.remove_container(container["Id"], force=True)
        print(f"\n{store}: compose stage took {time.monotonic() - started:.1f} s")
