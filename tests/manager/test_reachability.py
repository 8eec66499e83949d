"""`/swarm`'s `reachability` with two real managers on the file store: a manager that is
stopped (SIGSTOP: its lease lives on, so it stays listed) is shown unreachable by the
other within a few seconds, and reachable again once it is continued; the same for two
managers serving HTTPS that require client certificates (the probe has none)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from controlplane.tls import TlsFiles, client_context
from tests.harness.pki import make_pki
from tests.harness.polling import poll
from tests.harness.process import ServerProcess, free_port
from tests.manager.conftest import REPO, SHOAL, ManagerProcess

pytestmark = pytest.mark.slow

#: Far longer than the test: the stopped manager's record must outlive its silence.
LEASE_TTL = 60.0
#: The probe's cache (3 s) plus its timeout (0.75 s), with room for a busy machine.
WITHIN = 10.0


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


@dataclass(frozen=True)
class TlsManager:
    process: ServerProcess
    url: str


@pytest.fixture
def tls_pair(
    tmp_path: Path, file_url: str
) -> Iterator[tuple[TlsManager, TlsManager, httpx.Client]]:
    """Two managers serving HTTPS and requiring client certificates (`--tlscacert`), with
    the test's client; their own certificates are server-only, as in `test_tls`."""
    pki = make_pki(tmp_path / "pki")
    files = TlsFiles(cacert=str(pki.ca), cert=str(pki.client_cert), key=str(pki.client_key))
    client = httpx.Client(verify=client_context(files), timeout=5)
    managers = []
    for name in ("tls-a", "tls-b"):
        port = free_port()
        url = f"https://127.0.0.1:{port}"

        def healthy(url: str = url) -> bool:
            try:
                return client.get(f"{url}/health").status_code == 200
            except httpx.HTTPError:
                return False

        argv = [
            *SHOAL, "manager", "--discovery", file_url, "--listen", f"127.0.0.1:{port}",
            "--lease-ttl", str(LEASE_TTL), "--id", name,
            "--tlscert", str(pki.server_cert), "--tlskey", str(pki.server_key),
            "--tlscacert", str(pki.ca),
        ]  # fmt: skip
        process = ServerProcess(
            name=name,
            argv=argv,
            log_dir=tmp_path / "logs",
            ready=healthy,
            env={"PYTHONPATH": str(REPO)},
            start_timeout=60,
        )
        managers.append(TlsManager(process=process, url=url))
    try:
        for manager in managers:
            manager.process.start(wait=False)
        for manager in managers:
            manager.process.wait_ready()
        yield managers[0], managers[1], client
    finally:
        for manager in managers:
            if manager.process.proc is not None:
                manager.process.proc.send_signal(signal.SIGCONT)
            manager.process.stop()
        client.close()


def test_tls_managers_that_want_client_certificates_are_probed_too(
    tls_pair: tuple[TlsManager, TlsManager, httpx.Client],
) -> None:
    """The probe shows no certificate: each manager turns it away, which is an answer.
    A stopped one gives none."""
    a, b, client = tls_pair
    init = client.post(f"{a.url}/swarm/init")
    assert init.status_code == 201, init.text
    headers = {"Authorization": f"Bearer {init.json()['api_token']}"}

    def seen_by_b() -> dict[str, str]:
        body = client.get(f"{b.url}/swarm", headers=headers).json()
        return {m["id"]: m["reachability"] for m in body["managers"]}

    both = {"tls-a": "reachable", "tls-b": "reachable"}
    poll(lambda: seen_by_b() == both, within=WITHIN, what="both reachable over TLS")
    assert a.process.proc is not None
    a.process.proc.send_signal(signal.SIGSTOP)
    poll(
        lambda: seen_by_b() == {"tls-a": "unreachable", "tls-b": "reachable"},
        within=WITHIN,
        what="the stopped TLS manager shown unreachable",
    )
    a.process.proc.send_signal(signal.SIGCONT)
    poll(lambda: seen_by_b() == both, within=WITHIN, what="reachable again")
