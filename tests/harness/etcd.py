"""Real etcd servers for the tests: one shared member, private members, a cluster.

Every member listens on 127.0.0.1 only, on a client and a peer port from `free_port()`
(other engineers run servers on this machine too), with its data directory in a tmp dir
that outlives `stop()`, so `restart()` resumes with the same keys, leases and history.
Three shapes:

- `etcd_server` (session): one member shared by every test; `etcd_url` gives each test
  a fresh prefix on it, so tests never see each other's keys.
- `etcd_private_server` (per test): a member only that test uses, for tests that stop,
  kill, pause (SIGSTOP: a hung server) or compact it without disturbing the others.
- `etcd_tls_server` (per test): a member that serves clients over TLS only and demands
  a client certificate, from a throwaway CA made with `openssl`.
- `etcd_cluster` (module, healed after each test): three members that form one raft
  group; `stop_member(i)` / `kill_member(i)` and `start_member(i)` take one down and
  back, `leader_index()` says which one leads.

Members run with etcd's default timings (heartbeat 100 ms, election 1 s), the ones
production uses, because they decide the smallest lease etcd grants (2 s) and how long
a leader election takes, both of which the backend's tests measure.

Readiness is etcd's own `/health` endpoint (true once the member has a leader and
answers reads through it), which needs nothing but HTTP. A member's first start retries
with fresh ports when another process took one between `free_port()` and the bind.

By hand: `python -m tests.harness.etcd [--cluster]` runs one member (or three) in the
foreground and prints the discovery URL, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.pki import make_ca, sign
from tests.harness.process import ServerProcess, free_port, require_binary

HOST = "127.0.0.1"
_WHY = "the etcd:// discovery backend's tests run against a real etcd"
_START_ATTEMPTS = 3


def _http_get(url: str, *, context: ssl.SSLContext | None = None) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=0.5, context=context) as response:
            return str(response.read().decode())
    except (OSError, urllib.error.URLError, ValueError):
        return None


def unique_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True, slots=True)
class EtcdTLS:
    """A private CA, a server certificate for 127.0.0.1, and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def query(self) -> str:
        """The discovery URL options that make a client trust and present these."""
        return f"ca={self.ca}&cert={self.client_cert}&key={self.client_key}"

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def make_tls(directory: Path) -> EtcdTLS:
    """Write a throwaway CA and a server and a client certificate (`tests.harness.pki`)."""
    directory.mkdir(parents=True, exist_ok=True)
    make_ca(directory, "ca")
    for role, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        extensions = f"subjectAltName=IP:{HOST}\nextendedKeyUsage={usage}\n"
        sign(directory, role, ca="ca", extensions=extensions, subject=f"/CN={role}")
    return EtcdTLS(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )


class EtcdServer:
    """One etcd member on loopback, with a data directory that survives restarts.

    A lone member (the default) is its own cluster. Members of an `EtcdCluster` are
    given their name, ports and the cluster's peer list by it.
    """

    def __init__(
        self,
        *,
        base_dir: Path,
        binary: str,
        name: str = "etcd",
        client_port: int | None = None,
        peer_port: int | None = None,
        initial_cluster: str | None = None,
        cluster_token: str | None = None,
        extra_args: Sequence[str] = (),
        tls: EtcdTLS | None = None,
    ) -> None:
        self.binary = binary
        self.extra_args = list(extra_args)  # more etcd flags, e.g. "--auth-token-ttl=1"
        self.tls = tls  # serve clients over TLS only, and demand a client certificate
        self.base_dir = base_dir
        self.name = name
        self.data_dir = base_dir / f"{name}.data"
        self.log_dir = base_dir / "logs"
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self._own_ports = client_port is None and peer_port is None and initial_cluster is None
        self._served = False  # True once it has been ready: its ports are its own for good
        self._initial_cluster = initial_cluster
        self._cluster_token = cluster_token or f"shoal-test-{uuid.uuid4().hex[:8]}"
        self.process = self._process()

    def _process(self) -> ServerProcess:
        client = f"{self.client_scheme}://{HOST}:{self.client_port}"
        peer = f"http://{HOST}:{self.peer_port}"
        tls_args = []
        if self.tls is not None:
            tls_args = [
                f"--cert-file={self.tls.server_cert}",
                f"--key-file={self.tls.server_key}",
                f"--trusted-ca-file={self.tls.ca}",
                "--client-cert-auth",
            ]
        argv = [
            self.binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self._initial_cluster or f'{self.name}={peer}'}",
            f"--initial-cluster-token={self._cluster_token}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-level=info",
            *tls_args,
            *self.extra_args,
        ]
        return ServerProcess(
            name=f"etcd-{self.name}", argv=argv, log_dir=self.log_dir, ready=self.healthy
        )

    @property
    def client_scheme(self) -> str:
        return "http" if self.tls is None else "https"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        """host:port of the client API, as it appears in a discovery URL."""
        return f"{HOST}:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def pid(self) -> int | None:
        return self.process.proc.pid if self.process.proc is not None else None

    def url(self, prefix: str | None = None) -> str:
        """etcd://127.0.0.1:<port>/<prefix>: a fresh prefix unless one is given
        (with the TLS options when the member serves TLS)."""
        url = f"etcd://{self.endpoint}/{prefix or unique_prefix()}"
        return url if self.tls is None else f"{url}?{self.tls.query()}"

    def _get(self, path: str) -> str | None:
        context = self.tls.context() if self.tls is not None else None
        return _http_get(f"{self.client_scheme}://{self.endpoint}{path}", context=context)

    def healthy(self) -> bool:
        """The member has a leader and answers reads (etcd's /health)."""
        body = self._get("/health")
        if body is None:
            return False
        try:
            return str(json.loads(body).get("health")) == "true"
        except ValueError:
            return False

    def is_leader(self) -> bool:
        body = self._get("/metrics")
        return body is not None and "\netcd_server_is_leader 1" in body

    def start(self, *, wait: bool = True) -> None:
        """Start (or resume) the member; its first start retries on a port collision."""
        for attempt in range(_START_ATTEMPTS):
            self.process.start(wait=False)
            if not wait:
                return
            try:
                self.process.wait_ready()
            except RuntimeError:
                retry = self._own_ports and not self._served and self._port_taken()
                if not retry or attempt == _START_ATTEMPTS - 1:
                    raise
            else:
                self._served = True
                return
            self.process.stop()
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.client_port, self.peer_port = free_port(), free_port()
            self.process = self._process()

    def _port_taken(self) -> bool:
        return "address already in use" in self.process.tail(5)

    def wait_ready(self) -> None:
        self.process.wait_ready()
        self._served = True

    def stop(self) -> None:
        """SIGTERM: etcd shuts down cleanly; the data directory stays."""
        self.resume()  # a paused process would hold the SIGTERM until the kill timeout
        self.process.stop()

    def kill(self) -> None:
        """SIGKILL: a crash; the data directory stays (etcd fsyncs every commit)."""
        self.process.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self, *, timeout: float = 5.0) -> None:
        """SIGSTOP: the member keeps its sockets but answers nothing (a hung server).

        Returns once the kernel reports the process stopped, so no request sent after
        this call is still answered.
        """
        if self.process.proc is None:
            return
        self.process.proc.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.process.proc.pid}/stat")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, IndexError):
                # the state is the field after the parenthesised command name
                if stat.read_text().rsplit(")", 1)[1].split()[0] == "T":
                    return
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} did not stop within {timeout} s of SIGSTOP")

    def resume(self) -> None:
        if self.process.proc is not None:
            self.process.proc.send_signal(signal.SIGCONT)


class EtcdCluster:
    """Three (or `size`) etcd members on loopback forming one raft group."""

    def __init__(self, *, base_dir: Path, binary: str, size: int = 3) -> None:
        self.base_dir = base_dir
        self.binary = binary
        self.size = size
        self.members = self._members()

    def _members(self) -> list[EtcdServer]:
        names = [f"m{i}" for i in range(self.size)]
        ports = [(free_port(), free_port()) for _ in names]
        peers = ",".join(
            f"{name}=http://{HOST}:{peer}" for name, (_, peer) in zip(names, ports, strict=True)
        )
        token = f"shoal-test-{uuid.uuid4().hex[:8]}"
        return [
            EtcdServer(
                base_dir=self.base_dir,
                binary=self.binary,
                name=name,
                client_port=client,
                peer_port=peer,
                initial_cluster=peers,
                cluster_token=token,
            )
            for name, (client, peer) in zip(names, ports, strict=True)
        ]

    def start(self) -> None:
        """Start every member and wait until each has joined (with new ports on a collision)."""
        for attempt in range(_START_ATTEMPTS):
            for member in self.members:
                member.start(wait=False)
            try:
                for member in self.members:
                    member.wait_ready()
                return
            except RuntimeError:
                taken = any(m._port_taken() for m in self.members)
                if not taken or attempt == _START_ATTEMPTS - 1:
                    raise
            self.stop()
            for member in self.members:
                shutil.rmtree(member.data_dir, ignore_errors=True)
            self.members = self._members()

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def heal(self) -> None:
        """Resume paused members and start stopped ones: the whole cluster serving again."""
        for member in self.members:
            member.resume()
        stopped = [m for m in self.members if not m.running]
        for member in stopped:
            member.start(wait=False)
        for member in self.members:
            member.wait_ready()

    def url(self, prefix: str | None = None, *, order: list[int] | None = None) -> str:
        """A URL listing every member's client endpoint, in `order` if given."""
        indexes = order if order is not None else list(range(self.size))
        hosts = ",".join(self.members[i].endpoint for i in indexes)
        return f"etcd://{hosts}/{prefix or unique_prefix()}"

    def leader_index(self, *, timeout: float = 15.0) -> int:
        """Which member leads now (waiting for an election if one is under way)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, member in enumerate(self.members):
                if member.running and member.is_leader():
                    return i
            time.sleep(0.05)
        raise RuntimeError(f"no etcd leader after {timeout} s")

    def stop_member(self, index: int) -> None:
        """SIGTERM: a leader hands its leadership over before it exits."""
        self.members[index].stop()

    def kill_member(self, index: int) -> None:
        """SIGKILL: a crash; the others notice after an election timeout and elect."""
        self.members[index].kill()

    def start_member(self, index: int) -> None:
        self.members[index].start()


# --- pytest fixtures -------------------------------------------------------------------
@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One etcd member for the whole session; use `etcd_url` for a fresh prefix on it."""
    binary = require_binary("etcd", why=_WHY)
    server = EtcdServer(base_dir=tmp_path_factory.mktemp("etcd"), binary=binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def etcd_url(etcd_server: EtcdServer) -> str:
    """etcd://127.0.0.1:<port>/t-<uuid>: a fresh, empty prefix on the shared member."""
    return etcd_server.url()


@pytest.fixture
def etcd_private_server(tmp_path: Path) -> Iterator[EtcdServer]:
    """A member only this test uses: stop, kill, pause or compact it freely."""
    binary = require_binary("etcd", why=_WHY)
    server = EtcdServer(base_dir=tmp_path / "etcd", binary=binary)
    server.start()
    try:
        yield server
    finally:
        server.resume()
        server.stop()


@pytest.fixture
def etcd_tls_server(tmp_path: Path) -> Iterator[EtcdServer]:
    """A member that serves clients over TLS only and demands a client certificate;
    its `url()` carries the ca/cert/key options. Skipped when `openssl` is missing."""
    binary = require_binary("etcd", why=_WHY)
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (it makes the TLS test's certificates)")
    tls = make_tls(tmp_path / "tls")
    server = EtcdServer(base_dir=tmp_path / "etcd", binary=binary, tls=tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def _etcd_cluster_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    binary = require_binary("etcd", why=_WHY)
    cluster = EtcdCluster(base_dir=tmp_path_factory.mktemp("etcd-cluster"), binary=binary)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def etcd_cluster(_etcd_cluster_module: EtcdCluster) -> Iterator[EtcdCluster]:
    """Three members, started once per module and healed after each test that uses them."""
    yield _etcd_cluster_module
    _etcd_cluster_module.heal()


# --- by hand ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.etcd",
        description="Run a throwaway etcd on loopback in the foreground (Ctrl-C stops it).",
    )
    parser.add_argument("--cluster", action="store_true", help="three members instead of one")
    parser.add_argument("--prefix", default="shoal", help="cluster prefix for the printed URL")
    args = parser.parse_args(argv)
    binary = shutil.which("etcd")
    if binary is None:
        print(f"etcd is not installed ({_WHY}); run scripts/install-deps", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="shoal-etcd-") as tmp:
        base = Path(tmp)
        if args.cluster:
            cluster = EtcdCluster(base_dir=base, binary=binary)
            cluster.start()
            url, stop = cluster.url(args.prefix), cluster.stop
        else:
            server = EtcdServer(base_dir=base, binary=binary)
            server.start()
            url, stop = server.url(args.prefix), server.stop
        print(url, flush=True)
        print(f"logs in {base / 'logs'}; Ctrl-C stops", file=sys.stderr, flush=True)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        finally:
            stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
