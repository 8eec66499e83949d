"""`shoal up`: a one-machine cluster that is initialised, joined and ready for services,
and that comes back as the same cluster and node."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane.cli.up import Running, UpSettings, run_up
from controlplane.manager.config import ListenAddress
from tests.harness.images import ensure_busybox_image, http_hostname_server
from tests.harness.manager import up_process
from tests.harness.process import free_port
from tests.manager.conftest import SHOAL

DEADLINE = 20.0


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home" / "config.json"
    monkeypatch.setenv("SHOAL_CONFIG", str(path))
    return path


def settings(data_dir: Path) -> UpSettings:
    return UpSettings(
        data_dir=data_dir,
        listen=ListenAddress("127.0.0.1", 0),
        runtime="hollow",
        advertise_addr="127.0.0.1",
        heartbeat=0.5,
        lease_ttl=1.0,
    )


@asynccontextmanager
async def cluster_up(data_dir: Path) -> AsyncIterator[Running]:
    ready: list[Running] = []
    stop = asyncio.Event()
    task = asyncio.create_task(run_up(settings(data_dir), stop=stop, on_ready=ready.append))
    deadline = time.monotonic() + DEADLINE
    while not ready:
        if task.done():
            task.result()
        assert time.monotonic() < deadline, "shoal up did not get ready"
        await asyncio.sleep(0.02)
    try:
        yield ready[0]
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE)


def read_config(path: Path) -> dict[str, Any]:
    saved: dict[str, Any] = json.loads(path.read_text())
    return saved


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def poll(check: Callable[[], Awaitable[bool]], *, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def test_up_is_ready_for_services_and_comes_back_the_same(
    tmp_path: Path, config_file: Path
) -> None:
    async with cluster_up(tmp_path / "data") as running:
        saved = read_config(config_file)
        assert file_mode(config_file) == 0o600
        assert saved["host"] == running.api_url
        assert running.manager_id == running.node_id
        assert not running.notes
        headers = {"Authorization": f"Bearer {saved['token']}"}
        async with httpx.AsyncClient(base_url=running.api_url, headers=headers) as api:

            async def node_leads() -> bool:
                nodes = (await api.get("/nodes")).json()
                return [(n["status"], n["manager_status"]) for n in nodes] == [("ready", "leader")]

            await poll(node_leads, what="the local node is ready and shown as the leader")
            created = await api.post(
                "/services", json={"name": "web", "image": "nginx", "replicas": 2}
            )
            assert created.status_code == 201

            async def running_two() -> bool:
                service = (await api.get("/services/web")).json()
                return bool(service["replicas"] == {"desired": 2, "running": 2})

            await poll(running_two, what="two replicas running on the local node")
        first_cluster = saved["token"].split("-")[2]

    async with cluster_up(tmp_path / "data") as again:
        assert again.node_id == running.node_id
        assert not again.notes  # the saved token still works: nothing was minted
        saved = read_config(config_file)
        assert saved["token"].split("-")[2] == first_cluster
        async with httpx.AsyncClient(base_url=again.api_url) as api:
            listed = await api.get(
                "/services", headers={"Authorization": f"Bearer {saved['token']}"}
            )
            assert [s["name"] for s in listed.json()] == ["web"]


async def test_a_lost_config_file_gets_a_new_api_token(tmp_path: Path, config_file: Path) -> None:
    async with cluster_up(tmp_path / "data"):
        old = read_config(config_file)["token"]
    os.unlink(config_file)
    async with cluster_up(tmp_path / "data") as running:
        assert running.notes
        assert "new one" in running.notes[0]
        new = read_config(config_file)["token"]
        async with httpx.AsyncClient(base_url=running.api_url) as api:
            assert (
                await api.get("/swarm", headers={"Authorization": f"Bearer {new}"})
            ).status_code == 200
            assert (
                await api.get("/swarm", headers={"Authorization": f"Bearer {old}"})
            ).status_code == 401


@pytest.mark.slow
def test_the_command_starts_prints_and_stops_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    process = up_process(tmp_path, "--runtime", "hollow")
    process.start()
    try:
        host = json.loads(config.read_text())["host"]
        assert httpx.get(f"{host}/health").json()["initialised"] is True
        assert f"the API is at {host}" in process.log_path.read_text()
    finally:
        assert process.proc is not None
        process.proc.send_signal(signal.SIGTERM)
        code = process.proc.wait(timeout=DEADLINE)
    assert code == 0, process.tail()
    assert os.path.exists(tmp_path / "data" / "agent" / "node.json")


@pytest.mark.slow
def test_a_stop_while_waiting_for_the_docker_engine_ends_up_at_once(tmp_path: Path) -> None:
    """Started before its Docker Engine (or with none), `up` says it waits; Ctrl-C or
    SIGTERM still stops it then, and nothing of the node is left registered."""
    missing = tmp_path / "no-engine.sock"
    process = up_process(tmp_path, "--runtime", "docker", "--docker-host", f"unix://{missing}")
    process.ready = lambda: (
        "waiting for the docker runtime" in process.log_path.read_text(errors="replace")
    )
    process.start()
    assert process.proc is not None
    started = time.monotonic()
    process.proc.send_signal(signal.SIGINT)
    try:
        code = process.proc.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        process.proc.kill()
        pytest.fail("shoal up ignored SIGINT while waiting for the engine")
    assert code == 0, process.tail()
    assert time.monotonic() - started < DEADLINE
    assert "Traceback" not in process.log_path.read_text()


@pytest.mark.slow
def test_up_runs_a_stack_on_real_docker_and_publishes_its_port(
    tmp_path: Path, dockerd: str, docker_client: Any
) -> None:
    """The README's first steps on a real engine: `shoal up`, `stack deploy` of a web
    service publishing a port, the page answers on the machine, `stack rm` leaves no
    container."""
    image = ensure_busybox_image(docker_client)
    port = free_port()
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(
        json.dumps(  # JSON is YAML
            {
                "services": {
                    "web": {
                        "image": image,
                        "init": True,
                        "command": [part.replace("$", "$$") for part in http_hostname_server(8080)],
                        "ports": [f"{port}:8080"],
                        "deploy": {"replicas": 2},
                    }
                }
            }
        )
    )
    process = up_process(tmp_path, "--runtime", "docker", "--docker-host", dockerd)
    process.start()
    env = {**os.environ, "SHOAL_CONFIG": str(tmp_path / "config.json")}
    cluster_id = ""
    try:
        deployed = subprocess.run(
            [*SHOAL, "stack", "deploy", "-c", str(compose), "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert deployed.returncode == 0, deployed.stderr
        host = json.loads((tmp_path / "config.json").read_text())["host"]
        token = json.loads((tmp_path / "config.json").read_text())["token"]
        cluster_id = httpx.get(
            f"{host}/swarm", headers={"Authorization": f"Bearer {token}"}
        ).json()["cluster_id"]

        def running() -> list[Any]:
            return list(
                docker_client.containers.list(
                    filters={
                        "label": [f"com.shoal.cluster={cluster_id}", "com.shoal.service=demo_web"]
                    }
                )
            )

        deadline = time.monotonic() + 60
        answers: set[str] = set()
        while len(answers) < 2:
            assert time.monotonic() < deadline, (f"answers {answers}", len(running()))
            with contextlib.suppress(httpx.HTTPError):
                answers.add(httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text.strip())
            time.sleep(0.1)
        assert len(running()) == 2  # two containers, and each answered on the port
        removed = subprocess.run(
            [*SHOAL, "stack", "rm", "demo"], env=env, capture_output=True, text=True, timeout=60
        )
        assert removed.returncode == 0, removed.stderr
        deadline = time.monotonic() + 30
        while running():
            assert time.monotonic() < deadline, "stack rm left containers running"
            time.sleep(0.2)
    finally:
        assert process.proc is not None
        process.proc.send_signal(signal.SIGTERM)
        code = process.proc.wait(timeout=DEADLINE)
        if cluster_id:
            for container in docker_client.containers.list(
                all=True, filters={"label": f"com.shoal.cluster={cluster_id}"}
            ):
                container.remove(force=True)
    assert code == 0, process.tail()
