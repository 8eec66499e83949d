"""TLS on a manager's listeners, and the clients that must trust it.

A test CA made with `openssl` signs the manager's certificate (for 127.0.0.1) and a
client's; a second CA signs nothing the manager trusts. One real `shoal manager` with
`--tlscert/--tlskey/--tlscacert` and `--docker-api` serves both APIs over HTTPS with
client certificates required; the `shoal` CLI, an agent's join and the real `docker` CLI
(`--tlsverify`, as against a TLS dockerd) talk to it, and each wrong setting is refused
with a sentence naming what to fix.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from controlplane.agent.join import JoinError, JoinRequest, join_cluster
from controlplane.tls import TlsError, TlsFiles, client_context, server_context
from tests.harness.manager import REPO, SHOAL
from tests.harness.pki import Pki, make_pki
from tests.harness.process import ServerProcess, free_port


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing; run scripts/install-deps")
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass(frozen=True)
class TlsManager:
    url: str
    docker_host: str
    pki: Pki

    def client(self, *, cert: bool = True) -> httpx.Client:
        files = TlsFiles(
            cacert=str(self.pki.ca),
            cert=str(self.pki.client_cert) if cert else None,
            key=str(self.pki.client_key) if cert else None,
        )
        return httpx.Client(base_url=self.url, verify=client_context(files), timeout=10)


@pytest.fixture(scope="module")
def manager(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsManager]:
    port, docker_port = free_port(), free_port()
    url = f"https://127.0.0.1:{port}"
    files = TlsFiles(cacert=str(pki.ca), cert=str(pki.client_cert), key=str(pki.client_key))
    context = client_context(files)

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", verify=context, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    manager_args = [
        "--discovery", "memory://tls", "--listen", f"127.0.0.1:{port}",
        "--docker-api", f"127.0.0.1:{docker_port}",
        "--tlscert", str(pki.server_cert), "--tlskey", str(pki.server_key),
        "--tlscacert", str(pki.ca),
    ]  # fmt: skip
    process = ServerProcess(
        name="tls-manager",
        argv=[*SHOAL, "manager", *manager_args],
        log_dir=tmp_path_factory.mktemp("tls-logs"),
        ready=healthy,
        env={"PYTHONPATH": str(REPO)},
        start_timeout=60,
    )
    process.start()
    try:
        yield TlsManager(url=url, docker_host=f"tcp://127.0.0.1:{docker_port}", pki=pki)
    finally:
        process.stop()


def shoal(
    *args: str, config: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    return subprocess.run(
        [*SHOAL, *args],
        env={
            **clean,
            "PYTHONPATH": str(REPO),
            "SHOAL_CONFIG": str(config),
            "COLUMNS": "300",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- the files, checked before anything listens --------------------------------------------


def test_a_certificate_without_its_key_names_the_missing_option(pki: Pki) -> None:
    with pytest.raises(TlsError, match="--tlskey is missing"):
        server_context(TlsFiles(cert=str(pki.server_cert)))
    with pytest.raises(TlsError, match="--tlscacert needs --tlscert and --tlskey"):
        server_context(TlsFiles(cacert=str(pki.ca)))


def test_a_key_that_does_not_match_or_a_missing_file_is_named(pki: Pki) -> None:
    with pytest.raises(TlsError, match="matching key"):
        server_context(TlsFiles(cert=str(pki.server_cert), key=str(pki.client_key)))
    with pytest.raises(TlsError, match=r"--tlscacert /nowhere/ca\.pem: no such file"):
        client_context(TlsFiles(cacert="/nowhere/ca.pem"))


def test_the_manager_command_refuses_bad_tls_files_before_starting(
    pki: Pki, tmp_path: Path
) -> None:
    result = shoal(
        "manager", "--discovery", "memory://tls", "--listen", "127.0.0.1:0",
        "--tlscert", str(pki.server_cert), "--tlskey", str(tmp_path / "missing.key"),
        config=tmp_path / "config.json",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--tlskey" in result.stderr
    assert "missing.key: no such file" in result.stderr
    assert "Traceback" not in result.stderr


# --- the REST API over HTTPS ------------------------------------------------------------------


def test_the_api_is_served_over_https_and_needs_a_client_certificate(
    manager: TlsManager,
) -> None:
    with manager.client() as client:
        health = client.get("/health")
    assert health.status_code == 200
    with manager.client(cert=False) as client, pytest.raises(httpx.HTTPError):
        client.get("/health")  # the handshake fails: no client certificate
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{manager.url}/health", verify=True, timeout=5)  # CA not trusted
    plain = manager.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain}/health", timeout=5)  # no plain HTTP on a TLS listener


@pytest.fixture(scope="module")
def tls_env(manager: TlsManager) -> dict[str, str]:
    return {
        "SHOAL_TLS_CACERT": str(manager.pki.ca),
        "SHOAL_TLS_CERT": str(manager.pki.client_cert),
        "SHOAL_TLS_KEY": str(manager.pki.client_key),
    }


@pytest.fixture(scope="module")
def initialised(
    manager: TlsManager, tls_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """`shoal swarm init` through TLS; the config file it saved (host and token)."""
    config = tmp_path_factory.mktemp("tls-cli") / "config.json"
    init = shoal("swarm", "init", "--host", manager.url, config=config, env=tls_env)
    assert init.returncode == 0, init.stderr
    return config


def test_the_cli_inits_and_lists_nodes_through_tls(
    manager: TlsManager, initialised: Path, tls_env: dict[str, str]
) -> None:
    listed = shoal("node", "ls", config=initialised, env=tls_env)
    assert listed.returncode == 0, listed.stderr
    assert "HOSTNAME" in listed.stdout
    # the root flags instead of the environment
    flags = [
        "--tlscacert", str(manager.pki.ca),
        "--tlscert", str(manager.pki.client_cert), "--tlskey", str(manager.pki.client_key),
    ]  # fmt: skip
    by_flags = shoal(*flags, "node", "ls", config=initialised)
    assert by_flags.returncode == 0, by_flags.stderr
    assert by_flags.stdout == listed.stdout


def test_the_cli_says_what_to_fix_when_tls_is_wrong(manager: TlsManager, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    untrusted = shoal("node", "ls", "--host", manager.url, config=config)
    assert untrusted.returncode == 1
    assert "certificate is not trusted" in untrusted.stderr
    assert "--tlscacert" in untrusted.stderr
    assert "Traceback" not in untrusted.stderr

    no_cert = shoal(
        "node", "ls", "--host", manager.url, config=config,
        env={"SHOAL_TLS_CACERT": str(manager.pki.ca)},
    )  # fmt: skip
    assert no_cert.returncode == 1
    assert "requires a client certificate" in no_cert.stderr, no_cert.stderr
    assert "Traceback" not in no_cert.stderr

    half = shoal(
        "node", "ls", "--host", manager.url, config=config,
        env={"SHOAL_TLS_CERT": str(manager.pki.client_cert)},
    )  # fmt: skip
    assert half.returncode == 2
    assert "--tlskey is missing" in half.stderr


async def test_an_agent_joins_an_https_manager_with_the_ca_and_not_without(
    manager: TlsManager, initialised: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = JoinRequest(token="SHOAL-1-wrong", node_id="n-tls", hostname="tls", addr="127.0.0.9")
    monkeypatch.delenv("SHOAL_TLS_CACERT", raising=False)
    with pytest.raises(JoinError, match="certificate is not trusted"):
        await join_cluster(manager.url, request)
    monkeypatch.setenv("SHOAL_TLS_CACERT", str(manager.pki.ca))
    monkeypatch.setenv("SHOAL_TLS_CERT", str(manager.pki.client_cert))
    monkeypatch.setenv("SHOAL_TLS_KEY", str(manager.pki.client_key))
    # through TLS the manager answers: this token is wrong, so it refuses the join itself
    with pytest.raises(JoinError, match="refused the join token"):
        await join_cluster(manager.url, request)


# --- the Docker API, as the docker CLI uses a TLS daemon ----------------------------------------


def test_the_docker_cli_talks_to_the_docker_api_with_tlsverify(manager: TlsManager) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.fail("the docker CLI is missing; run scripts/install-deps")
    pki = manager.pki
    base = [docker, "-H", manager.docker_host, "--tlsverify", "--tlscacert", str(pki.ca)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    ok = subprocess.run(
        [*base, "--tlscert", str(pki.client_cert), "--tlskey", str(pki.client_key),
         "version", "--format", "{{.Server.Version}}"],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip()
    stranger = subprocess.run(
        [*base, "--tlscert", str(pki.stranger_cert), "--tlskey", str(pki.stranger_key), "ps"],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert stranger.returncode != 0  # a client certificate from another CA is refused


def test_plain_python_ssl_refuses_a_certificate_from_another_ca(manager: TlsManager) -> None:
    """The check a user's own script gets: verify against the CA, not just encryption."""
    context = ssl.create_default_context(cafile=str(manager.pki.ca))
    context.load_cert_chain(str(manager.pki.stranger_cert), str(manager.pki.stranger_key))
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{manager.url}/health", verify=context, timeout=5)
