"""The real docker CLI (version 28) against a manager's `--docker-api`, on a real cluster.

What a docker user sees: `info` shows the cluster, `run -d -e constraint:node==X`
places the container on node X through the leader, `ps` lists every task's container
under its node's name, `logs` gives stdout and stderr apart, `stop` and `rm -f` act on
the node, `images` lists the nodes' images, and what shoal does not do fails with a
line saying so.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from controlplane.agent.runtime.base import LABEL_NODE
from tests.dockerapi.conftest import DOCKER, DockerCli, cli_env
from tests.e2e.conftest import Cluster, poll
from tests.harness.images import shell_until_sigterm

SCRIPT = "echo hello-from-shoal; echo oops-on-stderr >&2"


def _ps(docker_cli: DockerCli, *flags: str) -> list[dict[str, str]]:
    out = docker_cli("ps", *flags, "--no-trunc", "--format", "{{json .}}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_info_shows_the_cluster_and_each_managers_role(
    swarm: Cluster, docker_cli: DockerCli
) -> None:
    leader = poll(swarm.leader, within=30, what="a leader")
    replica = next(m for m in swarm.managers if m is not leader)
    shown = docker_cli("info", manager=leader).stdout
    assert "Role: primary" in shown
    assert "Nodes: 3" in shown
    for agent in swarm.agents:
        assert swarm.node_id_of(agent) in shown
    assert "Role: replica" in docker_cli("info", manager=replica).stdout


def test_the_cli_negotiates_api_1_41(docker_cli: DockerCli) -> None:
    version = docker_cli("version", "--format", "{{json .}}").stdout
    server = json.loads(version)["Server"]
    assert server["ApiVersion"] == "1.41"
    client = json.loads(version)["Client"]
    assert client["ApiVersion"] == "1.41"  # negotiated down from the CLI's own


def test_run_with_a_constraint_lands_on_that_node_and_shows_in_ps(
    swarm: Cluster, docker_cli: DockerCli
) -> None:
    target = swarm.node_id_of(swarm.agents[1])
    created = docker_cli(
        "run", "-d", "--name", "pinned", "--init", "-e", f"constraint:node=={target}",
        "-e", "GREETING=hi", swarm.image, *shell_until_sigterm(SCRIPT),
    ).stdout.strip()  # fmt: skip
    assert created
    [container] = swarm.running("pinned", 1, within=60)
    assert container.labels[LABEL_NODE] == target
    env = swarm.inspect(container)["Config"]["Env"]
    assert "GREETING=hi" in env
    assert not [e for e in env if e.startswith("constraint:")]
    listed = [c for c in _ps(docker_cli) if c["ID"] == created]
    assert len(listed) == 1, _ps(docker_cli)
    assert listed[0]["Names"].endswith("/pinned")
    assert listed[0]["State"] == "running"


def test_logs_stop_and_rm(swarm: Cluster, docker_cli: DockerCli) -> None:
    created = docker_cli(
        "run", "-d", "--name", "talker", "--init", swarm.image, *shell_until_sigterm(SCRIPT),
    ).stdout.strip()  # fmt: skip
    swarm.running("talker", 1, within=60)

    def logged() -> tuple[str, str] | None:
        done = docker_cli("logs", created)
        return (done.stdout, done.stderr) if "hello-from-shoal" in done.stdout else None

    stdout, stderr = poll(logged, within=30, what="the container's output in docker logs")
    assert stdout.strip() == "hello-from-shoal"
    assert stderr.strip() == "oops-on-stderr"
    stamped = docker_cli("logs", "--timestamps", "--tail", "2", "talker")
    for text, line in ((stamped.stdout, "hello-from-shoal"), (stamped.stderr, "oops-on-stderr")):
        stamp, _, rest = text.strip().partition(" ")
        assert rest == line
        assert stamp.startswith("20")
        assert stamp.endswith("Z")
    last = docker_cli("logs", "--tail", "1", "talker")
    assert len((last.stdout + last.stderr).splitlines()) == 1

    assert docker_cli("stop", "-t", "5", created).stdout.strip() == created
    assert created not in [c["ID"] for c in _ps(docker_cli)]
    [stopped] = [c for c in _ps(docker_cli, "-a") if c["ID"] == created]
    assert stopped["State"] == "exited"
    assert not swarm.containers("talker")  # nothing of it runs in Docker
    assert swarm.containers("talker", all=True)

    docker_cli("rm", "-f", created)
    poll(
        lambda: not swarm.containers("talker", all=True),
        within=60,
        what="the container removed from its node",
    )
    assert created not in [c["ID"] for c in _ps(docker_cli, "-a")]


def test_rm_force_removes_a_running_container(swarm: Cluster, docker_cli: DockerCli) -> None:
    created = docker_cli(
        "run", "-d", "--name", "doomed", "--init", swarm.image, *shell_until_sigterm(),
    ).stdout.strip()  # fmt: skip
    swarm.running("doomed", 1, within=60)
    refused = docker_cli("rm", created, check=False)
    assert refused.returncode != 0
    assert "cannot remove a running container" in refused.stderr
    docker_cli("rm", "-f", "doomed")
    poll(lambda: not swarm.containers("doomed", all=True), within=60, what="doomed removed")


def test_ps_lists_service_tasks_under_their_node_names(
    swarm: Cluster, docker_cli: DockerCli
) -> None:
    swarm.create("web", replicas=2, command=shell_until_sigterm())
    running = swarm.running("web", 2, within=60)
    ids = sorted(c.id for c in running)

    def both_listed() -> list[dict[str, str]] | None:
        # The engine may show a container before its agent's report reaches the manager.
        listed = [c for c in _ps(docker_cli) if "shoal-web." in c["Names"]]
        return listed if sorted(c["ID"] for c in listed) == ids else None

    listed = poll(both_listed, within=15, what="docker ps listing both tasks' containers")
    hostnames = {n["id"]: n["hostname"] for n in swarm.call("GET", "/nodes")}
    for entry in listed:
        [match] = [c for c in running if c.id == entry["ID"]]
        assert entry["Names"].startswith(f"{hostnames[match.labels[LABEL_NODE]]}/")


def test_images_lists_what_the_nodes_have(swarm: Cluster, docker_cli: DockerCli) -> None:
    shown = docker_cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert swarm.image in shown


def test_unsupported_commands_fail_saying_so(swarm: Cluster, docker_cli: DockerCli) -> None:
    for args in (("network", "ls"), ("pull", "busybox:latest"), ("volume", "ls")):
        done = docker_cli(*args, check=False)
        assert done.returncode != 0, args
        assert "not supported by shoal" in done.stderr, (args, done.stderr)
    created = docker_cli(
        "run", "-d", "--name", "quiet", "--init", swarm.image, *shell_until_sigterm(),
    ).stdout.strip()  # fmt: skip
    done = docker_cli("exec", created, "true", check=False)
    assert done.returncode != 0
    assert "docker exec is not supported by shoal" in done.stderr
    attached = docker_cli("run", swarm.image, "echo", "hi", check=False)
    assert attached.returncode != 0
    assert "docker run without -d" in attached.stderr
    assert "not supported by shoal" in attached.stderr
    bad = docker_cli("run", "-d", "-e", "constraint:node=~x", swarm.image, check=False)
    assert bad.returncode != 0
    assert "constraint:node=~x" in bad.stderr


def test_affinity_and_the_constraints_label_place_like_classic_swarm(
    swarm: Cluster, docker_cli: DockerCli
) -> None:
    """Through the replica manager: it writes to the store, the leader places."""
    replica = next(m for m in swarm.managers if m is not swarm.leader())
    first, second = swarm.node_id_of(swarm.agents[0]), swarm.node_id_of(swarm.agents[2])
    docker_cli(
        "run", "-d", "--name", "anchor", "--init", "-e", f"constraint:node=={first}",
        swarm.image, *shell_until_sigterm(), manager=replica,
    )  # fmt: skip
    docker_cli(
        "run", "-d", "--name", "follower", "--init", "-e", "affinity:container==anchor",
        swarm.image, *shell_until_sigterm(), manager=replica,
    )  # fmt: skip
    docker_cli(
        "run", "-d", "--name", "labelled", "--init",
        "--label", f'com.docker.swarm.constraints=["node=={second}"]',
        swarm.image, *shell_until_sigterm(), manager=replica,
    )  # fmt: skip
    for name, node in (("anchor", first), ("follower", first), ("labelled", second)):
        [container] = swarm.running(name, 1, within=60)
        assert container.labels[LABEL_NODE] == node, name


def test_inspect_kill_restart_and_wait(swarm: Cluster, docker_cli: DockerCli) -> None:
    created = docker_cli(
        "run", "-d", "--name", "cycled", "--init", swarm.image, *shell_until_sigterm(),
    ).stdout.strip()  # fmt: skip
    [container] = swarm.running("cycled", 1, within=60)
    inspected = json.loads(docker_cli("inspect", "cycled").stdout)[0]
    assert inspected["Id"] == created
    assert inspected["State"]["Running"] is True
    assert inspected["Node"]["ID"] == container.labels[LABEL_NODE]
    assert inspected["Name"].endswith("/cycled")

    docker_cli("kill", created)
    assert docker_cli("wait", created).stdout.strip() == "137"
    assert not swarm.containers("cycled")

    docker_cli("restart", created)
    swarm.running("cycled", 1, within=60)
    [again] = [c for c in _ps(docker_cli) if c["ID"] == created]
    assert again["State"] == "running"

    docker_cli("run", "-d", "--name", "three", swarm.image, "sh", "-c", "exit 3")
    assert docker_cli("wait", "three").stdout.strip() == "3"


def test_a_container_that_cannot_run_says_why(swarm: Cluster, docker_cli: DockerCli) -> None:
    nowhere = docker_cli(
        "run", "-d", "--name", "nowhere", "-e", "constraint:node==no-such-node",
        swarm.image, "true", check=False,
    )  # fmt: skip
    assert nowhere.returncode != 0
    assert "waits for a node" in nowhere.stderr
    assert "constraint:node==no-such-node" in nowhere.stderr
    missing = docker_cli("run", "-d", "--name", "imageless", "no-such/image:1", check=False)
    assert missing.returncode != 0
    assert "no-such/image:1" in missing.stderr
    assert "failed to start" in missing.stderr


def test_events_stream_cluster_changes(
    swarm: Cluster, docker_cli: DockerCli, tmp_path: Path
) -> None:
    config = tmp_path / "events-config"
    config.mkdir()
    env = cli_env(swarm.managers[0], home=tmp_path, config=config)
    watcher = subprocess.Popen(
        [DOCKER, "events", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    seen: list[str] = []
    reader = threading.Thread(
        target=lambda: seen.extend(iter(watcher.stdout.readline, "")) if watcher.stdout else None,
        daemon=True,
    )
    reader.start()
    try:
        time.sleep(1)  # let it subscribe (an event before that is not its to see)
        docker_cli("run", "-d", "--name", "announced", "--init", swarm.image, "sleep", "60")
        poll(
            lambda: any(line.strip() == "service create announced" for line in seen),
            within=30,
            what="the create event in docker events",
        )
        poll(
            lambda: any(line.startswith("container start") for line in seen),
            within=30,
            what="a container start event in docker events",
        )
    finally:
        watcher.kill()
        watcher.wait(timeout=10)
