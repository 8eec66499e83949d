"""The CLI against real processes: `shoal manager` and `shoal agent`s on a file store.

Three hollow nodes (label `kind=hollow`: they run nothing, but the reconciler, the
agents' watches and status reports are real) and one process-runtime node (`kind=process`:
tasks are local processes, so a task can really fail). This is where waiting is tested:
`create`, `update`, `scale`, `rollback` and `stack deploy` return once the tasks run,
a failed update exits 1 with the reason, and Ctrl-C stops the waiting but not the
deployment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import Result

from controlplane.cli.service import converge
from tests.cli.conftest import shoal
from tests.harness.process import ServerProcess, free_port, port_open

pytestmark = pytest.mark.slow

REPO = Path(__file__).parents[2]
CLI = [sys.executable, "-c", "from controlplane.cli import main; main()"]
HOLLOW = "node.labels.kind==hollow"


@dataclass
class RealCluster:
    url: str
    token: str
    worker_token: str
    discovery: str
    env: dict[str, str]

    def api(self, path: str, **params: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        response = httpx.get(f"{self.url}{path}", headers=headers, params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def wait_nodes(self, count: int, *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(n["status"] == "ready" for n in self.api("/nodes")) >= count:
                return
            time.sleep(0.2)
        raise AssertionError(f"fewer than {count} nodes ready: {self.api('/nodes')}")


def process_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"PYTHONPATH": str(REPO), "SHOAL_POLL_SECONDS": "0.1", **(extra or {})}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    base = tmp_path_factory.mktemp("real")
    discovery = f"file://{base}/store"
    port = free_port()
    manager = ServerProcess(
        name="manager",
        argv=[*CLI, "manager", "--discovery", discovery, "--listen", f"127.0.0.1:{port}"],
        log_dir=base,
        ready=lambda: port_open("127.0.0.1", port),
        env=process_env(),
    )
    manager.start()
    url = f"http://127.0.0.1:{port}"
    answer = httpx.post(f"{url}/swarm/init", timeout=10).json()
    agent_args = ["agent", "--discovery", discovery, "--heartbeat", "1s"]
    agent_args += ["--advertise-addr", "127.0.0.1"]
    hollow = ServerProcess(
        name="hollow",
        argv=[
            *CLI,
            *agent_args,
            "--runtime",
            "hollow",
            "--hollow-nodes",
            "3",
            "--state-dir",
            str(base / "hollow"),
            "--label",
            "kind=hollow",
        ],
        log_dir=base,
        ready=lambda: True,
        env=process_env(),
    )
    local = ServerProcess(
        name="process",
        argv=[
            *CLI,
            *agent_args,
            "--runtime",
            "process",
            "--state-dir",
            str(base / "process"),
            "--label",
            "kind=process",
        ],
        log_dir=base,
        ready=lambda: True,
        env=process_env(),
    )
    cluster = RealCluster(
        url=url,
        token=answer["api_token"],
        worker_token=answer["join_tokens"]["worker"],
        discovery=discovery,
        env={"SHOAL_HOST": url, "SHOAL_TOKEN": answer["api_token"]},
    )
    try:
        hollow.start()
        local.start()
        cluster.wait_nodes(4)
        yield cluster
    finally:
        for service in cluster.api("/services") if manager.running else []:
            shoal("service", "rm", service["name"], env=cluster.env)
        _wait_no_tasks(cluster) if manager.running else None
        local.stop()
        hollow.stop()
        manager.stop()


def _wait_no_tasks(cluster: RealCluster, timeout: float = 20.0) -> None:
    """Removed services' tasks are stopped by their agents (process tasks must not leak)."""
    deadline = time.monotonic() + timeout
    while cluster.api("/tasks") and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(converge, "POLL_SECONDS", 0.1)


def run(real: RealCluster, *args: str) -> Result:
    result = shoal(*args, env=real.env)
    assert "Traceback" not in result.output
    return result


def running_images(real: RealCluster, name: str) -> list[str]:
    tasks = real.api("/tasks", service=name, desired_state="running")
    return sorted(t["image"] for t in tasks if t["state"] == "running")


def test_create_update_scale_rollback_each_return_once_converged(real: RealCluster) -> None:
    created = run(
        real, "service", "create", "--name", "web", "--replicas", "4", "--constraint", HOLLOW,
        "--update-parallelism", "2", "--update-monitor", "0.5s", "nginx:1.26",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "web: overall progress: 4 out of 4 tasks" in created.stderr
    assert created.stderr.endswith("verify: converged\n")
    assert running_images(real, "web") == ["nginx:1.26"] * 4

    updated = run(real, "service", "update", "--image", "nginx:1.27", "web")
    assert updated.exit_code == 0, updated.output
    assert running_images(real, "web") == ["nginx:1.27"] * 4

    scaled = run(real, "service", "scale", "web=2")
    assert scaled.exit_code == 0, scaled.output
    assert running_images(real, "web") == ["nginx:1.27"] * 2
    assert len(real.api("/tasks", service="web", desired_state="running")) == 2

    rolled = run(real, "service", "rollback", "web")
    assert rolled.exit_code == 0, rolled.output
    assert "(rolling back)" in rolled.stderr  # by rollback_config, as swarm mode does
    assert real.api("/services/web")["update_state"] == "rolled back"
    assert running_images(real, "web") == ["nginx:1.27"] * 4  # the spec before `scale`

    listed = run(real, "service", "ls").stdout.splitlines()
    assert [line.split()[3] for line in listed if " web " in line] == ["4/4"]


def test_a_failing_update_exits_1_with_the_reason(real: RealCluster) -> None:
    created = run(
        real, "service", "create", "--name", "job", "--constraint", "node.labels.kind==process",
        "--update-monitor", "3s", "--update-failure-action", "pause",
        "--stop-grace-period", "1s", "busybox", "sleep", "120",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    failed = run(real, "service", "update", "--args", "false", "job")
    assert failed.exit_code == 1, failed.output
    last = failed.stderr.splitlines()[-1]
    assert last.startswith("shoal: job: update paused due to failure: task ")
    assert "exit code 1" in last


def test_ctrl_c_stops_the_waiting_not_the_deployment(real: RealCluster) -> None:
    process = subprocess.Popen(
        [
            *CLI,
            "service",
            "create",
            "--name",
            "nowhere",
            "--replicas",
            "2",
            "--constraint",
            "node.labels.zone==mars",
            "busybox",
        ],
        env={**os.environ, **process_env(real.env)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    seen = ""
    deadline = time.monotonic() + 30
    while "pending" not in seen and time.monotonic() < deadline:
        seen += process.stderr.readline()
    assert "2 pending: no suitable node (" in seen
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "Stopped waiting; the deployment goes on" in err
    assert "Traceback" not in err
    (service,) = json.loads(run(real, "service", "inspect", "nowhere").stdout)
    assert service["spec"]["replicas"] == 2  # still there, still wanted
    assert run(real, "service", "rm", "nowhere").exit_code == 0


def test_stack_deploy_waits_for_every_service(real: RealCluster, tmp_path: Path) -> None:
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(
        "services:\n"
        "  web:\n"
        "    image: nginx:1.27\n"
        "    deploy:\n"
        "      replicas: 3\n"
        f"      placement: {{constraints: ['{HOLLOW}']}}\n"
        "      update_config: {monitor: 500ms}\n"
        "  cache:\n"
        "    image: redis:7\n"
        f"    deploy: {{placement: {{constraints: ['{HOLLOW}']}}}}\n"
    )
    deployed = run(real, "stack", "deploy", "-c", str(compose), "shop")
    assert deployed.exit_code == 0, deployed.output
    assert "shop_web: overall progress: 3 out of 3 tasks" in deployed.stderr
    assert "shop_cache: overall progress: 1 out of 1 tasks" in deployed.stderr
    assert running_images(real, "shop_web") == ["nginx:1.27"] * 3

    compose.write_text(compose.read_text().replace("nginx:1.27", "nginx:1.28"))
    again = run(real, "stack", "deploy", "-c", str(compose), "shop")
    assert again.exit_code == 0, again.output
    assert again.stdout == "Updating service shop_web\nService shop_cache is unchanged\n"
    assert running_images(real, "shop_web") == ["nginx:1.28"] * 3
    assert run(real, "stack", "rm", "shop").exit_code == 0


def test_swarm_join_runs_an_agent_that_joins(real: RealCluster, tmp_path: Path) -> None:
    before = len(real.api("/nodes"))
    port = real.url.rsplit(":", 1)[1]
    joined = ServerProcess(
        name="joined",
        argv=[
            *CLI,
            "swarm",
            "join",
            "--token",
            real.worker_token,
            f"127.0.0.1:{port}",
            "--runtime",
            "hollow",
            "--state-dir",
            str(tmp_path / "joined"),
            "--advertise-addr",
            "127.0.0.1",
        ],
        log_dir=tmp_path,
        ready=lambda: True,
        env=process_env(),
    )
    joined.start()
    try:
        real.wait_nodes(before + 1)
    finally:
        joined.stop()
    assert (tmp_path / "joined" / "node.json").exists()


def test_init_with_discovery_starts_a_manager_when_none_answers(tmp_path: Path) -> None:
    port = free_port()
    result = shoal(
        "swarm", "init", "--discovery", f"file://{tmp_path}/store", "--host", f"127.0.0.1:{port}",
        env={"PYTHONPATH": str(REPO)},
    )  # fmt: skip
    started = result.stdout.splitlines()[0]
    pid = int(started.split("(pid ")[1].split(")")[0])
    try:
        assert result.exit_code == 0, result.output
        assert started.startswith(f"Started a manager (pid {pid}) at http://127.0.0.1:{port}")
        assert "Cluster " in result.stdout
        assert shoal("node", "ls").exit_code == 0  # the saved host and token reach it
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.1)
