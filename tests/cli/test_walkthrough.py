"""The walk-through, end to end, as a user types it: real store, manager, agent and Docker.

    shoal manager --discovery file://...         (a process)
    shoal swarm init                             -> the join command, the token saved
    shoal swarm join --token T MANAGER           (a process: the agent, Docker runtime)
    shoal node ls                                -> the node, Ready, its engine version
    shoal service create -p ...:80 busybox httpd -> waits; curl answers from the container
    shoal service update --env-add ...           -> a new container answers
    shoal service rollback / scale web=0         -> back, then nothing runs
    shoal stack deploy -c compose.yml demo       -> both replicas run in Docker
    shoal stack rm demo / service rm web         -> the containers go

Only the first and third lines are processes; every `shoal` command runs in-process with
the environment a user would have after `swarm init` (the config file), so its output
and exit code are checked as the user would read them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from typer.testing import Result

from controlplane.agent.runtime.base import LABEL_CLUSTER, LABEL_SERVICE
from controlplane.cli import service as service_cli
from tests.cli.conftest import shoal
from tests.cli.test_processes import CLI, process_env
from tests.harness.images import ensure_busybox_image, http_hostname_server, shell_until_sigterm
from tests.harness.process import ServerProcess, free_port, port_open

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@dataclass
class Walk:
    url: str
    port: int
    image: str
    engine: Any  # docker.DockerClient
    cluster_id: str

    def containers(self, service: str) -> list[Any]:
        labels = [f"{LABEL_CLUSTER}={self.cluster_id}", f"{LABEL_SERVICE}={service}"]
        found: list[Any] = self.engine.containers.list(filters={"label": labels})
        return found


def ok(*args: str) -> Result:
    result = shoal(*args)
    assert result.exit_code == 0, f"shoal {' '.join(args)}:\n{result.output}"
    assert "Traceback" not in result.output
    return result


def eventually(check: Callable[[], bool], *, within: float = 30.0, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {within} s: {what}")


@pytest.fixture
def walk(dockerd: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Walk]:
    monkeypatch.setattr(service_cli, "POLL_SECONDS", 0.2)
    engine = docker.DockerClient(base_url=dockerd)
    image = ensure_busybox_image(engine)
    port = free_port()
    manager = ServerProcess(
        name="manager",
        argv=[
            *CLI,
            "manager",
            "--discovery",
            f"file://{tmp_path}/store",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        log_dir=tmp_path,
        ready=lambda: port_open("127.0.0.1", port),
        env=process_env(),
    )
    manager.start()
    url = f"http://127.0.0.1:{port}"
    agent: ServerProcess | None = None
    cluster_id = ""
    try:
        init = ok("swarm", "init", "--host", url)
        join_line = next(line for line in init.stdout.splitlines() if "shoal swarm join" in line)
        cluster_id = init.stdout.split()[1]
        join_args = join_line.split()[1:]  # swarm join --token T 127.0.0.1:PORT
        agent = ServerProcess(
            name="agent",
            argv=[
                *CLI,
                *join_args,
                "--runtime",
                "docker",
                "--advertise-addr",
                "127.0.0.1",
                "--state-dir",
                str(tmp_path / "agent"),
            ],
            log_dir=tmp_path,
            ready=lambda: True,
            env=process_env({"DOCKER_HOST": dockerd}),
        )
        agent.start()
        yield Walk(url=url, port=port, image=image, engine=engine, cluster_id=cluster_id)
    finally:
        if manager.running:  # remove what is left, and let the agent stop its containers
            for service in json.loads(shoal("service", "ls", "--format", "json").stdout or "[]"):
                shoal("service", "rm", service["name"])
        if agent is not None:
            eventually(lambda: not engine_has(engine, cluster_id), within=20, what="cleanup")
            agent.stop()
        manager.stop()
        if cluster_id:
            for container in engine.containers.list(
                all=True, filters={"label": f"{LABEL_CLUSTER}={cluster_id}"}
            ):
                container.remove(force=True)
        engine.close()


def test_walkthrough(walk: Walk, tmp_path: Path) -> None:
    eventually(lambda: "Ready" in shoal("node", "ls").stdout, what="the joined node to be ready")
    nodes = ok("node", "ls").stdout.splitlines()
    assert nodes[0].startswith("ID                            HOSTNAME   STATUS   AVAILABILITY")
    (node,) = nodes[1:]
    columns = node.split()
    assert columns[1] == "*"  # the agent's state dir is this machine's: it is this node
    assert columns[3:5] == ["Ready", "Active"]
    assert columns[-1] == walk.engine.version()["Version"]

    web_port = free_port()
    created = ok(
        "service", "create", "--name", "web", "--stop-grace-period", "2s",
        "--update-monitor", "1s", "-p", f"published={web_port},target=80,mode=host",
        walk.image, *http_hostname_server(80),
    )  # fmt: skip
    assert "web: overall progress: 1 out of 1 tasks" in created.stderr
    first = answer(web_port)
    assert first == running_container(walk, "web")[:12]  # the container's own hostname

    ok("service", "update", "--env-add", "GREETING=hello", "web")
    second = answer(web_port)
    assert second != first
    assert container_env(walk, "web").get("GREETING") == "hello"

    ok("service", "rollback", "web")
    assert "GREETING" not in container_env(walk, "web")
    assert answer(web_port) not in (first, second)

    ok("service", "scale", "web=0")
    assert walk.containers("web") == []  # no running container for it any more

    compose = tmp_path / "compose.yml"
    compose.write_text(
        "services:\n"
        "  sleeper:\n"
        f"    image: {walk.image}\n"
        # compose reads `$` as a variable: the shell's `$!` is written `$$!`
        f"    command: {json.dumps(shell_until_sigterm()).replace('$', '$$')}\n"
        "    stop_grace_period: 2s\n"
        "    deploy:\n"
        "      replicas: 2\n"
    )
    deployed = ok("stack", "deploy", "-c", str(compose), "demo")
    assert deployed.stdout == "Creating service demo_sleeper\n"
    assert len(walk.containers("demo_sleeper")) == 2
    services = ok("stack", "services", "demo").stdout
    assert "2/2" in services

    ok("stack", "rm", "demo")
    eventually(lambda: walk.containers("demo_sleeper") == [], within=30, what="stack removed")
    ok("service", "rm", "web")


def engine_has(engine: Any, cluster_id: str) -> bool:
    """Whether any container of this cluster still runs."""
    return bool(engine.containers.list(filters={"label": f"{LABEL_CLUSTER}={cluster_id}"}))


def answer(port: int) -> str:
    """The body served on the node's published port (retried while a task starts)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text.strip()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def running_container(walk: Walk, service: str) -> str:
    (container,) = walk.containers(service)
    container_id: str = container.id
    return container_id


def container_env(walk: Walk, service: str) -> dict[str, str]:
    (container,) = walk.containers(service)
    pairs = container.attrs["Config"]["Env"] or []
    return dict(pair.split("=", 1) for pair in pairs)
