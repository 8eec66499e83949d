"""Manager reachability: the probe of another manager's API, and its cache.

The probe is tried against small loopback servers: one that answers HTTP, one that
accepts connections but never answers (a stopped process: the kernel still accepts),
a closed port, and TLS listeners, one that wants a client certificate the probe does
not have. The cache is driven with a fake probe and a fake clock.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from controlplane import keys
from controlplane.api.reachability import ManagerReachability, answers
from controlplane.models import ManagerRecord, NodeRole
from tests.api.conftest import Api
from tests.harness.process import free_port

TIMEOUT = 0.5

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def answer_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    await writer.drain()
    writer.close()


@asynccontextmanager
async def serving(handler: Handler, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing; run scripts/install-deps")
    d = tmp_path_factory.mktemp("cert")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
         "-days", "2", "-subj", "/CN=127.0.0.1"],
        cwd=d, check=True, capture_output=True,
    )  # fmt: skip
    return d / "cert.pem", d / "key.pem"


def server_tls(certificate: tuple[Path, Path], *, client_certs: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    if client_certs:  # what a manager given --tlscacert does
        context.load_verify_locations(cafile=certificate[0])
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def test_a_manager_that_answers_http_is_reachable() -> None:
    async with serving(answer_http) as port:
        assert await answers(f"http://127.0.0.1:{port}", timeout=TIMEOUT)


async def test_any_http_status_counts_as_an_answer() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async with serving(refuse) as port:
        assert await answers(f"http://127.0.0.1:{port}", timeout=TIMEOUT)


async def test_a_process_that_accepts_but_never_answers_is_unreachable(silent_port: int) -> None:
    assert not await answers(f"http://127.0.0.1:{silent_port}", timeout=TIMEOUT)
    assert not await answers(f"https://127.0.0.1:{silent_port}", timeout=TIMEOUT)


async def test_a_closed_port_or_a_bad_url_is_unreachable() -> None:
    assert not await answers(f"http://127.0.0.1:{free_port()}", timeout=TIMEOUT)
    assert not await answers("not a url", timeout=TIMEOUT)
    assert not await answers("http://127.0.0.1:99999", timeout=TIMEOUT)


async def test_a_connection_closed_without_an_answer_is_unreachable() -> None:
    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with serving(hang_up) as port:
        assert not await answers(f"http://127.0.0.1:{port}", timeout=TIMEOUT)


async def test_an_https_manager_is_probed_without_trusting_its_certificate(
    certificate: tuple[Path, Path],
) -> None:
    tls = server_tls(certificate, client_certs=False)
    async with serving(answer_http, tls=tls) as port:
        assert await answers(f"https://127.0.0.1:{port}", timeout=TIMEOUT)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_an_https_manager_that_wants_a_client_certificate_is_reachable(
    certificate: tuple[Path, Path], version: ssl.TLSVersion
) -> None:
    """It refuses the probe, which shows no certificate: in TLS 1.2 with an alert in
    the handshake, in 1.3 after it. Either way it answered: it is there."""
    tls = server_tls(certificate, client_certs=True)
    tls.maximum_version = version
    async with serving(answer_http, tls=tls) as port:
        assert await answers(f"https://127.0.0.1:{port}", timeout=TIMEOUT)


class FakeProbe:
    def __init__(self) -> None:
        self.reachable: dict[str, bool] = {}
        self.calls: list[str] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, url: str) -> bool:
        self.calls.append(url)
        await self.release.wait()
        if url == "http://broken":
            raise RuntimeError("the probe broke")
        return self.reachable.get(url, True)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


MANAGERS = [("me", "http://me"), ("b", "http://b"), ("c", "http://c")]


async def test_itself_is_reachable_without_a_probe_and_others_are_probed() -> None:
    probe = FakeProbe()
    probe.reachable["http://c"] = False
    reach = ManagerReachability(probe=probe, clock=FakeClock(), max_age=3)
    assert await reach.check(MANAGERS, me="me") == {"me": True, "b": True, "c": False}
    assert sorted(probe.calls) == ["http://b", "http://c"]


async def test_results_are_kept_for_max_age_then_probed_again() -> None:
    probe, clock = FakeProbe(), FakeClock()
    reach = ManagerReachability(probe=probe, clock=clock, max_age=3)
    await reach.check(MANAGERS, me="me")
    probe.reachable["http://b"] = False
    clock.now += 2.9
    assert (await reach.check(MANAGERS, me="me"))["b"] is True  # the kept answer
    assert len(probe.calls) == 2
    clock.now += 0.2
    assert (await reach.check(MANAGERS, me="me"))["b"] is False
    assert len(probe.calls) == 4


async def test_a_burst_of_calls_shares_one_probe_per_manager() -> None:
    probe = FakeProbe()
    probe.release.clear()
    reach = ManagerReachability(probe=probe, clock=FakeClock())
    calls = [asyncio.create_task(reach.check(MANAGERS, me="me")) for _ in range(20)]
    await asyncio.sleep(0.01)
    probe.release.set()
    results = await asyncio.gather(*calls)
    assert all(result == {"me": True, "b": True, "c": True} for result in results)
    assert sorted(probe.calls) == ["http://b", "http://c"]


async def test_probes_run_concurrently_so_a_call_waits_for_one_timeout_not_the_sum() -> None:
    started: list[str] = []

    async def slow(url: str) -> bool:
        started.append(url)
        await asyncio.sleep(0.2)
        return False

    reach = ManagerReachability(probe=slow)
    task = asyncio.create_task(reach.check(MANAGERS, me="me"))
    await asyncio.sleep(0.05)
    assert sorted(started) == ["http://b", "http://c"]  # both under way at once
    assert await task == {"me": True, "b": False, "c": False}


async def test_a_caller_that_goes_away_does_not_cancel_a_shared_probe() -> None:
    probe = FakeProbe()
    probe.release.clear()
    reach = ManagerReachability(probe=probe, clock=FakeClock())
    first = asyncio.create_task(reach.check(MANAGERS, me="me"))
    second = asyncio.create_task(reach.check(MANAGERS, me="me"))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    probe.release.set()
    assert await second == {"me": True, "b": True, "c": True}
    assert len(probe.calls) == 2


async def test_a_probe_that_breaks_means_unreachable_and_a_departed_manager_is_forgotten() -> None:
    probe, clock = FakeProbe(), FakeClock()
    reach = ManagerReachability(probe=probe, clock=clock)
    result = await reach.check([("me", "http://me"), ("x", "http://broken")], me="me")
    assert result == {"me": True, "x": False}
    await reach.check([("me", "http://me")], me="me")
    # Back at a new address: probed afresh, not served the old answer.
    assert await reach.check([("me", "http://me"), ("x", "http://x2")], me="me") == {
        "me": True,
        "x": True,
    }


async def test_swarm_and_node_ls_agree_on_a_manager_that_does_not_answer(cluster: Api) -> None:
    """Three managers, each also a node (as `shoal manager --agent-state-dir` runs them):
    this one, one that answers, one that does not."""
    probe = FakeProbe()
    probe.reachable["http://silent:2377"] = False
    cluster.context.reachability = ManagerReachability(probe=probe)
    me = cluster.context.manager_id
    for manager_id, url in (
        (me, "http://me:2377"),
        ("m2", "http://up:2377"),
        ("m3", "http://silent:2377"),
    ):
        record = ManagerRecord(id=manager_id, api_url=url, started=1.0, shoal_version="t")
        await cluster.store.put(keys.manager(manager_id), record.dump())
        await cluster.add_node(manager_id, hostname=manager_id, role=NodeRole.MANAGER)

    response = await cluster.client.get("/swarm")
    assert response.status_code == 200
    swarm = {m["id"]: m["reachability"] for m in response.json()["managers"]}
    assert swarm == {me: "reachable", "m2": "reachable", "m3": "unreachable"}
    nodes = {n["id"]: n["manager_status"] for n in (await cluster.client.get("/nodes")).json()}
    assert nodes == {me: "reachable", "m2": "reachable", "m3": "unreachable"}
    assert (await cluster.client.get("/nodes/m3")).json()["manager_status"] == "unreachable"
    assert "http://me:2377" not in probe.calls  # itself: never probed
    assert sorted(probe.calls) == ["http://silent:2377", "http://up:2377"]  # then cached
