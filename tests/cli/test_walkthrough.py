"""The seed's walk-through, end to end, as a user types it: a real store (etcd, and the file
store), a manager, two agents and Docker.

    machine 1:  shoal manager --discovery URL --agent-state-dir A1   (a process)
                shoal swarm init                   -> prints `shoal swarm join --token T ADDR`
                shoal swarm join --token T ADDR    (a process: this host's node, 127.0.0.2)
    machine 2:  shoal swarm join --token T ADDR    (a process: a second node, 127.0.0.3)
    machine 1:  shoal node ls                      -> both Ready; this host's is the Leader
                shoal stack deploy -c compose.yml test   (web: 5 replicas, a port)
                shoal service ps test_web          -> 5 running, on both nodes
                (open either node's address)       -> five different container ids
                (edit the file: 8 replicas) shoal stack deploy ... -> 8 run; the 5 are kept
                shoal stack rm test                -> no container of the cluster is left
    machine 2:  (stop the agent) shoal swarm leave --force

The processes are the manager and the agents; every `shoal` command runs in-process with
the environment a user has after `swarm init` (the config file), so its output and exit
code are checked as the user would read them. Each task answers on the port Docker
published for it on its node's address, and every node answers on the stack's port from
each of the tasks in turn (the routing mesh).

`test_service_verbs` walks `service create / update / rollback / scale` on the same
cluster (file store only: it tests the CLI, not the store).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
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
from controlplane.cli.service import converge
from tests.cli.conftest import shoal
from tests.cli.test_processes import CLI, process_env
from tests.harness.images import ensure_busybox_image, http_hostname_server, shell_until_sigterm
from tests.harness.process import ServerProcess, free_port, port_open

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MACHINE_1, MACHINE_2 = "127.0.0.2", "127.0.0.3"


@dataclass
class Walk:
    url: str
    image: str
    engine: Any  # docker.DockerClient
    tmp: Path
    join_line: str  # as `swarm init` printed it
    cluster_id: str
    agents: dict[str, ServerProcess]  # by address
    state_dirs: dict[str, Path]  # by address

    def containers(self, service: str | None = None, *, all: bool = False) -> list[Any]:
        """The cluster's containers in Docker (of `service`), by the labels agents write."""
        labels = [f"{LABEL_CLUSTER}={self.cluster_id}"]
        if service is not None:
            labels.append(f"{LABEL_SERVICE}={service}")
        found: list[Any] = self.engine.api.containers(all=all, filters={"label": labels})
        return found

    def join(self, addr: str) -> ServerProcess:
        """Run the printed join command on the "machine" at `addr`, as its user would."""
        state_dir = self.state_dirs.setdefault(addr, self.tmp / f"agent-{addr}")
        agent = ServerProcess(
            name=f"agent-{addr}",
            argv=[
                *CLI,
                *self.join_line.split()[1:],  # swarm join --token T 127.0.0.1:PORT
                *("--advertise-addr", addr, "--state-dir", str(state_dir)),
                *("--runtime", "docker"),
            ],
            log_dir=self.tmp,
            ready=lambda: True,
            env=process_env(),
        )
        self.agents[addr] = agent
        agent.start()
        return agent


def ok(*args: str) -> Result:
    result = shoal(*args)
    assert result.exit_code == 0, f"shoal {' '.join(args)}:\n{result.output}"
    assert "Traceback" not in result.output
    return result


def eventually(check: Callable[[], bool], *, within: float = 60.0, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"not within {within} s: {what}")


@pytest.fixture(params=["etcd", "file"])
def walk(
    request: pytest.FixtureRequest,
    dockerd: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Walk]:
    """Machine 1's manager, the cluster initialised through it, and its own node joined;
    `walk.join(MACHINE_2)` joins the second machine."""
    monkeypatch.setattr(converge, "POLL_SECONDS", 0.2)
    monkeypatch.setenv("DOCKER_HOST", dockerd)  # the agents' engine
    discovery = (
        request.getfixturevalue("etcd_url") if request.param == "etcd" else f"file://{tmp_path}/s"
    )
    engine = docker.DockerClient(base_url=dockerd)
    image = ensure_busybox_image(engine)
    machine_1_dir = tmp_path / "agent-1"
    monkeypatch.setenv("SHOAL_STATE_DIR", str(machine_1_dir))  # the commands run on machine 1
    port = free_port()
    manager = ServerProcess(
        name="manager",
        argv=[
            *(*CLI, "manager", "--discovery", discovery, "--listen", f"127.0.0.1:{port}"),
            *("--agent-state-dir", str(machine_1_dir)),
        ],
        log_dir=tmp_path,
        ready=lambda: port_open("127.0.0.1", port),
        env=process_env(),
        start_timeout=60,
    )
    manager.start()
    url = f"http://127.0.0.1:{port}"
    walk: Walk | None = None
    try:
        init = ok("swarm", "init", "--host", url)
        join_line = next(line for line in init.stdout.splitlines() if "shoal swarm join" in line)
        walk = Walk(
            url=url,
            image=image,
            engine=engine,
            tmp=tmp_path,
            join_line=join_line.strip(),
            cluster_id=init.stdout.split()[1],  # "Cluster <id> initialised ..."
            agents={},
            state_dirs={MACHINE_1: machine_1_dir},
        )
        walk.join(MACHINE_1)
        yield walk
    finally:
        if walk is not None:
            if manager.running:  # remove what is left, and let the agents stop it
                left = shoal("service", "ls", "--format", "json").stdout
                for service in json.loads(left or "[]"):
                    shoal("service", "rm", service["name"])
                if any(agent.running for agent in walk.agents.values()):
                    eventually(lambda: not walk.containers(), within=30, what="cleanup")
            for agent in walk.agents.values():
                agent.stop()
        manager.stop()
        if walk is not None:
            for container in walk.containers(all=True):
                engine.api.remove_container(container["Id"], force=True)
        engine.close()


def test_walkthrough(walk: Walk, tmp_path: Path) -> None:
    walk.join(MACHINE_2)
    eventually(lambda: shoal("node", "ls").stdout.count(" Ready ") == 2, what="two nodes ready")
    header, *nodes = ok("node", "ls").stdout.splitlines()
    assert header.split() == [
        "ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER", "STATUS", "ENGINE", "VERSION"
    ]  # fmt: skip
    this = next(line for line in nodes if " * " in line)  # machine 1's node, marked `*`
    assert this.split()[3:6] == ["Ready", "Active", "Leader"]
    other = next(line for line in nodes if line != this)
    assert other.split()[2:4] == ["Ready", "Active"]
    assert "Leader" not in other

    compose = tmp_path / "docker-compose.yml"
    published = free_port()
    write_compose(compose, image=walk.image, replicas=5, published=published)
    deployed = ok("stack", "deploy", "-c", str(compose), "test")
    assert deployed.stdout == "Creating service test_web\n"

    five = running_tasks("test_web")
    assert len(five) == 5
    assert len({task["node_id"] for task in five}) == 2  # spread across both machines
    assert {task["node"] for task in five} == {MACHINE_1, MACHINE_2}
    answers = {task_answer(task) for task in five}
    assert answers == {task["container_id"][:12] for task in five}  # five containers serve
    for addr in (MACHINE_1, MACHINE_2):  # the routing mesh: any node, each task in turn

        def from_each_task(at: str = addr) -> bool:
            return mesh_answers(at, published, times=5) == answers

        eventually(from_each_task, what=f"{addr}:{published} to answer from all five")
    table = ok("service", "ps", "test_web").stdout.splitlines()
    assert sum(" Running " in line for line in table) == 5

    write_compose(compose, image=walk.image, replicas=8, published=published)
    redeployed = ok("stack", "deploy", "-c", str(compose), "test")
    assert redeployed.stdout == "Updating service test_web\n"
    eight = running_tasks("test_web")
    assert len(eight) == 8
    assert {t["id"] for t in five} <= {t["id"] for t in eight}  # scaling kept the five
    assert len(walk.containers("test_web")) == 8

    ok("stack", "rm", "test")
    eventually(lambda: walk.containers(all=True) == [], what="every container of the stack gone")
    assert ok("stack", "ls").stdout.splitlines() == ["NAME   SERVICES"]

    walk.agents[MACHINE_2].stop()  # the second machine stops its agent, then leaves
    left = ok("swarm", "leave", "--force", "--state-dir", str(walk.state_dirs[MACHINE_2]))
    assert left.stdout.startswith("Node ")
    assert "left the cluster" in left.stdout
    assert len(ok("node", "ls", "-q").stdout.split()) == 1


@pytest.mark.parametrize("walk", ["file"], indirect=True)
def test_service_verbs(walk: Walk) -> None:
    eventually(lambda: " Ready " in shoal("node", "ls").stdout, what="the node to be ready")
    created = ok(
        "service", "create", "--name", "web", "--stop-grace-period", "2s",
        "--update-monitor", "1s", "-p", "80", walk.image, *http_hostname_server(80),
    )  # fmt: skip
    assert "web: overall progress: 1 out of 1 tasks" in created.stderr
    (task,) = running_tasks("web")
    first = task_answer(task)
    assert first == task["container_id"][:12]  # the container's own hostname

    ok("service", "update", "--env-add", "GREETING=hello", "web")
    (task,) = running_tasks("web")
    second = task_answer(task)
    assert second != first
    assert container_env(walk, task["container_id"]).get("GREETING") == "hello"

    ok("service", "rollback", "web")
    (task,) = running_tasks("web")
    assert "GREETING" not in container_env(walk, task["container_id"])
    assert task_answer(task) not in (first, second)

    ok("service", "scale", "web=0")
    assert walk.containers("web") == []  # no running container for it any more
    ok("service", "rm", "web")

    ok("service", "create", "--name", "checked", "--init", "--health-cmd", "test -e /healthy",
       "--health-interval", "500ms", "--health-retries", "2", "--health-start-period", "1m",
       walk.image, *shell_until_sigterm("touch /healthy"))  # fmt: skip
    (task,) = running_tasks("checked")  # running: healthy, as swarm mode has it
    assert walk.engine.api.inspect_container(task["container_id"])["Config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "test -e /healthy"],
        "Interval": 500_000_000,
        "Timeout": 30_000_000_000,
        "Retries": 2,
        "StartPeriod": 60_000_000_000,
    }
    ok("service", "update", "--no-healthcheck", "checked")
    (task,) = running_tasks("checked")
    config = walk.engine.api.inspect_container(task["container_id"])["Config"]
    assert config["Healthcheck"]["Test"] == ["NONE"]
    ok("service", "rm", "checked")

    script = "echo hello from $(hostname); echo oops >&2"
    ok("service", "create", "--name", "talker", "--replicas", "2", "--init",
       walk.image, *shell_until_sigterm(script))  # fmt: skip
    tasks = {t["slot"]: t for t in running_tasks("talker")}
    hostname = socket.gethostname()
    expected = sorted(
        f"talker.{slot}.{task['id'][:12]}@{hostname}    | hello from {task['container_id'][:12]}"
        for slot, task in tasks.items()
    )
    eventually(
        lambda: sorted(shoal("service", "logs", "talker").stdout.splitlines()) == expected,
        what=f"service logs to print {expected}",
    )
    logs = ok("service", "logs", "--no-task-ids", "--timestamps", "--tail", "2", "talker")
    assert sorted(line.split(" ", 1)[1] for line in logs.stderr.splitlines()) == [
        f"talker.1@{hostname}    | oops",
        f"talker.2@{hostname}    | oops",
    ]  # stderr lines on stderr, each after its time
    assert all(line[:4].isdigit() for line in logs.stdout.splitlines())  # 2026-11-26T...
    assert len(logs.stdout.splitlines()) == 2
    slot_1 = tasks[1]
    one = ok("service", "logs", slot_1["id"]).stdout  # a task's id, as docker takes too
    assert one == (
        f"talker.1.{slot_1['id'][:12]}@{hostname}    | hello from {slot_1['container_id'][:12]}\n"
    )
    assert sorted(following("talker").splitlines()) == expected  # and it stayed open
    ok("service", "scale", "talker=1")  # the cluster goes on after a follower went away
    ok("service", "rm", "talker")


def following(service: str, *, seconds: float = 20.0) -> str:
    """What `shoal service logs -f SERVICE` printed in `seconds`; it must still run then."""
    with pytest.raises(subprocess.TimeoutExpired) as stopped:
        subprocess.run(
            [*CLI, "service", "logs", "--follow", service],
            capture_output=True,
            env={**os.environ, **process_env()},
            timeout=seconds,
            check=False,
        )
    out = stopped.value.stdout or b""
    return out.decode() if isinstance(out, bytes) else out


def write_compose(path: Path, *, image: str, replicas: int, published: int) -> None:
    """The seed's compose file: a web service with `replicas` tasks publishing a port."""
    path.write_text(
        "services:\n"
        "  web:\n"
        f"    image: {image}\n"
        # compose reads `$` as a variable: the shell's `$!` is written `$$!`
        f"    command: {json.dumps(http_hostname_server(80)).replace('$', '$$')}\n"
        "    init: true\n"
        "    stop_grace_period: 2s\n"
        "    ports:\n"
        f'      - "{published}:80"\n'
        "    deploy:\n"
        f"      replicas: {replicas}\n"
    )


def running_tasks(service: str) -> list[dict[str, Any]]:
    """`service ps --format json`'s desired-running tasks, with each one's node address."""
    tasks = json.loads(ok("service", "ps", service, "--format", "json").stdout)
    nodes = {node["id"]: node for node in json.loads(ok("node", "ls", "--format", "json").stdout)}
    live = [t for t in tasks if t["desired_state"] == "running"]
    for task in live:
        assert task["state"] == "running", task
        task["node"] = nodes[task["node_id"]]["addr"]
    return live


def mesh_answers(addr: str, port: int, *, times: int) -> set[str]:
    """What `times` requests to a node's published port were answered with."""
    found = set()
    for _ in range(times):
        try:
            found.add(httpx.get(f"http://{addr}:{port}/", timeout=2).text.strip())
        except httpx.HTTPError:
            return set()
    return found


def task_answer(task: dict[str, Any]) -> str:
    """What the task's container serves on the port Docker published for it."""
    (endpoint,) = task["endpoints"]
    url = f"http://{endpoint['host_ip']}:{endpoint['published_port']}/"
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, timeout=2).text.strip()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def container_env(walk: Walk, container_id: str) -> dict[str, str]:
    pairs = walk.engine.api.inspect_container(container_id)["Config"]["Env"] or []
    return dict(pair.split("=", 1) for pair in pairs)
