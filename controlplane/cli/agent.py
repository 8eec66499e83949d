"""`shoal agent`: make this host a node of a cluster, in the foreground.

The agent learns where the cluster's store is either directly (`--discovery URL`, for
tests and single-machine use) or by joining once through a manager (`--join MANAGER
--token T`); either way the identity is kept in the state directory, so a restart needs
neither flag. SIGTERM or SIGINT stop it cleanly: the node's lease is revoked at once
(the managers see it leave) and its containers keep running for the next agent to adopt.

Every option has an environment variable, for systemd units and compose files.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controlplane.agent.heartbeat import NodeIdConflict
from controlplane.agent.identity import Identity, IdentityError, load_identity
from controlplane.agent.join import JoinError, joined_identity
from controlplane.agent.mesh import MeshConfig
from controlplane.agent.runtime.registry import UnknownRuntime
from controlplane.cli.running import logging_to_stderr, parse_log_level, run_until_signalled
from discovery import DiscoveryError

# The agent itself (and its HTTP endpoint, FastAPI) is imported when the command runs,
# so that `shoal --help` and the other commands start without it.
if TYPE_CHECKING:
    from controlplane.agent.agent import Agent
    from controlplane.agent.fleet import HollowFleet
    from controlplane.agent.runtime_factory import RuntimeOptions

DEFAULT_STATE_DIR = Path("/var/lib/shoal/agent")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def parse_duration(text: str) -> float:
    """`5s`, `500ms`, `1m`, or plain seconds -> seconds."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise typer.BadParameter(f"{text!r} is not a positive duration such as 5s, 500ms or 1m")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def parse_size(text: str) -> int:
    """`8GiB`, `512MiB`, `2G`, or plain bytes -> bytes (an `i` means powers of 1024)."""
    match = _SIZE.match(text)
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a size such as 8GiB, 512MiB or 2G")
    unit = (match.group(2) or "").lower()
    binary = "i" in unit
    letter = unit.rstrip("b").rstrip("i") if unit != "b" else "b"
    factor = _SIZE_UNITS[letter]
    if binary:
        factor = 1024 ** "bkmgt".index(letter)
    return int(float(match.group(1)) * factor)


def parse_labels(items: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"label {item!r} is not KEY=VALUE", param_hint="--label")
        labels[key.strip()] = value.strip()
    return labels


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """The command line, checked."""

    discovery: str | None
    join: str | None
    token: str | None
    advertise_addr: str
    labels: dict[str, str]
    state_dir: Path
    runtime: RuntimeOptions
    hollow_nodes: int
    heartbeat: float
    remove_tasks_on_stop: bool = False
    hostname: str | None = None
    api_port: int = 0
    mesh: bool = True
    mesh_proxy_protocol: bool = False
    mesh_forwarding: str = "relay"


def agent(
    discovery: str | None = typer.Option(
        None,
        "--discovery",
        envvar="SHOAL_DISCOVERY",
        metavar="URL",
        help="The cluster's store (etcd://, consul://, file://), instead of --join.",
    ),
    join: str | None = typer.Option(
        None,
        "--join",
        envvar="SHOAL_JOIN",
        metavar="MANAGER",
        help="Join once through this manager (HOST:PORT); needs --token.",
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="SHOAL_JOIN_TOKEN",
        metavar="TOKEN",
        help="The worker join token.",
    ),
    advertise_addr: str | None = typer.Option(
        None,
        "--advertise-addr",
        envvar="SHOAL_ADVERTISE_ADDR",
        metavar="ADDR",
        help="The address others reach this node at (default: the first non-loopback one).",
    ),
    label: list[str] = typer.Option(
        [],
        "--label",
        envvar="SHOAL_NODE_LABELS",
        metavar="KEY=VALUE",
        help="A node label, set when the node first joins (repeatable).",
    ),
    state_dir: Path = typer.Option(
        DEFAULT_STATE_DIR,
        "--state-dir",
        envvar="SHOAL_STATE_DIR",
        metavar="DIR",
        help="Where the node's identity is kept.",
    ),
    runtime: str = typer.Option(
        "docker",
        "--runtime",
        envvar="SHOAL_RUNTIME",
        metavar="NAME",
        help="docker, process or hollow.",
    ),
    hollow_nodes: int = typer.Option(
        1,
        "--hollow-nodes",
        envvar="SHOAL_HOLLOW_NODES",
        min=1,
        help="With --runtime hollow: how many nodes this process hosts.",
    ),
    hollow_cpus: float = typer.Option(
        4.0, "--hollow-cpus", envvar="SHOAL_HOLLOW_CPUS", min=0.0, help="A hollow node's CPUs."
    ),
    hollow_memory: str = typer.Option(
        "8GiB",
        "--hollow-memory",
        envvar="SHOAL_HOLLOW_MEMORY",
        metavar="SIZE",
        help="A hollow node's memory.",
    ),
    heartbeat: str = typer.Option(
        "5s",
        "--heartbeat",
        envvar="SHOAL_HEARTBEAT",
        metavar="DURATION",
        help="Heartbeat period; the node is down after 3 missed periods.",
    ),
    docker_host: str | None = typer.Option(
        None,
        "--docker-host",
        envvar="DOCKER_HOST",
        metavar="URL",
        help="The Docker Engine to use.",
    ),
    log_level: str = typer.Option(
        "info",
        "--log-level",
        envvar="SHOAL_LOG_LEVEL",
        metavar="LEVEL",
        help="debug, info, warning or error.",
    ),
    remove_tasks_on_stop: bool = typer.Option(
        False,
        "--remove-tasks-on-stop",
        envvar="SHOAL_REMOVE_TASKS_ON_STOP",
        help="On a clean stop, remove this node's task containers (for a node that goes "
        "away with its agent, as in a compose project). Off: they keep running.",
    ),
    hostname: str | None = typer.Option(
        None,
        "--hostname",
        envvar="SHOAL_HOSTNAME",
        metavar="NAME",
        help="The node's name in node ls (default: the runtime's: the engine host's name). "
        "Tells apart several agents sharing one engine.",
    ),
    api_port: int = typer.Option(
        0,
        "--api-port",
        envvar="SHOAL_AGENT_API_PORT",
        min=0,
        max=65535,
        metavar="PORT",
        help="Port of the agent endpoint (logs, inspect, kill for managers), on the "
        "advertise address; 0: any free port (the node record names it).",
    ),
    mesh: bool = typer.Option(
        True,
        "--mesh/--no-mesh",
        envvar="SHOAL_MESH",
        help="Routing mesh: answer on every ingress-published port on the advertise "
        "address and forward to the service's running tasks (never on hollow nodes).",
    ),
    mesh_proxy_protocol: bool = typer.Option(
        False,
        "--mesh-proxy-protocol",
        envvar="SHOAL_MESH_PROXY_PROTOCOL",
        help="Send a PROXY protocol v1 header to backends, so they see the client's address.",
    ),
    mesh_forwarding: str = typer.Option(
        "relay",
        "--mesh-forwarding",
        envvar="SHOAL_MESH_FORWARDING",
        metavar="relay|kernel",
        help="relay: the agent relays the bytes (works anywhere); kernel: nftables DNAT "
        "in the kernel (needs root or CAP_NET_ADMIN and nft; keeps client addresses).",
    ),
) -> None:
    """Run this host as a node of the cluster, in the foreground."""
    from controlplane.agent.agent import AgentError
    from controlplane.agent.runtime_factory import RuntimeOptions, check_runtime_name

    if discovery and join:
        raise typer.BadParameter("give either --discovery or --join, not both")
    if join and not token:
        raise typer.BadParameter("--join needs --token (the worker join token)")
    if hollow_nodes > 1 and runtime != "hollow":
        raise typer.BadParameter("--hollow-nodes needs --runtime hollow")
    try:
        check_runtime_name(runtime)
    except UnknownRuntime as exc:
        raise typer.BadParameter(str(exc), param_hint="--runtime") from None
    _check_mesh_forwarding(mesh_forwarding, proxy_protocol=mesh_proxy_protocol)
    level = parse_log_level(log_level)
    addr = advertise_addr or _default_addr()
    settings = AgentSettings(
        discovery=discovery,
        join=join,
        token=token,
        advertise_addr=addr,
        labels=parse_labels(label),
        state_dir=state_dir,
        runtime=RuntimeOptions(
            name=runtime,
            advertise_addr=addr,
            state_dir=state_dir,
            docker_host=docker_host,
            hollow_cpus=hollow_cpus,
            hollow_memory=parse_size(hollow_memory),
        ),
        hollow_nodes=hollow_nodes,
        heartbeat=parse_duration(heartbeat),
        remove_tasks_on_stop=remove_tasks_on_stop,
        hostname=hostname,
        api_port=api_port,
        mesh=mesh,
        mesh_proxy_protocol=mesh_proxy_protocol,
        mesh_forwarding=mesh_forwarding,
    )
    if mesh and runtime != "hollow" and mesh_forwarding == "kernel":
        _check_kernel_forwarding(addr)
    try:
        with logging_to_stderr(level):
            asyncio.run(serve(settings))
    except (asyncio.CancelledError, KeyboardInterrupt):
        typer.echo("shoal agent: interrupted before the node registered", err=True)
        raise typer.Exit(130) from None
    except (
        NodeIdConflict,
        AgentError,
        JoinError,
        IdentityError,
        DiscoveryError,
        UnknownRuntime,
    ) as exc:
        typer.echo(f"shoal agent: {exc}", err=True)
        raise typer.Exit(1) from None


def _default_addr() -> str:
    from controlplane.agent.address import default_advertise_addr

    return default_advertise_addr()


async def serve(settings: AgentSettings) -> None:
    """Join if asked, then run one agent (or a hollow fleet) until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    targets: list[Agent | HollowFleet] = []
    stopping: list[asyncio.Task[None]] = []

    def on_signal() -> None:
        if not targets:  # still joining: nothing registered, nothing to revoke
            if main is not None:
                main.cancel()
        elif not stopping:  # later signals: stopping is bounded and already under way
            stopping.append(loop.create_task(targets[0].stop()))

    async def join_and_run() -> None:
        discovery = settings.discovery or await _discovery_url(settings)
        targets.append(_target(settings, discovery))
        await targets[0].run()

    try:
        await run_until_signalled(join_and_run(), on_signal=on_signal)
    finally:
        if stopping:
            await asyncio.gather(*stopping, return_exceptions=True)


def _target(settings: AgentSettings, discovery: str) -> Agent | HollowFleet:
    from controlplane.agent.agent import Agent
    from controlplane.agent.fleet import HollowFleet
    from controlplane.agent.runtime_factory import runtime_factory

    if settings.hollow_nodes > 1:
        return HollowFleet(
            count=settings.hollow_nodes,
            state_dir=settings.state_dir,
            advertise_addr=settings.advertise_addr,
            runtime=lambda index: runtime_factory(_hollow_options(settings, index)),
            discovery=discovery,
            labels=settings.labels,
            heartbeat_period=settings.heartbeat,
            hostname_prefix=f"{socket.gethostname()}-hollow",
        )
    return Agent(
        runtime=runtime_factory(settings.runtime),
        state_dir=settings.state_dir,
        advertise_addr=settings.advertise_addr,
        discovery=discovery,
        labels=settings.labels,
        heartbeat_period=settings.heartbeat,
        remove_units_on_stop=settings.remove_tasks_on_stop,
        hostname=settings.hostname,
        api_port=None if settings.runtime.name == "hollow" else settings.api_port,
        mesh=(
            MeshConfig(
                proxy_protocol=settings.mesh_proxy_protocol,
                forwarding=settings.mesh_forwarding,
            )
            if settings.mesh and settings.runtime.name != "hollow"
            else None
        ),
    )


def _check_mesh_forwarding(forwarding: str, *, proxy_protocol: bool) -> None:
    if forwarding not in ("relay", "kernel"):
        raise typer.BadParameter(
            f"{forwarding!r} is not relay or kernel", param_hint="--mesh-forwarding"
        )
    if forwarding == "kernel" and proxy_protocol:
        raise typer.BadParameter(
            "--mesh-proxy-protocol needs --mesh-forwarding relay: in kernel mode the "
            "backends see the client's address itself, and only the relay can send a "
            "PROXY header",
            param_hint="--mesh-forwarding",
        )


def _check_kernel_forwarding(addr: str) -> None:
    """Exit 2 with a sentence unless this agent can program nftables for `addr`."""
    from controlplane.agent.mesh.nftables import NftError, check_nft, table_name

    try:
        table_name(addr)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--advertise-addr") from None
    try:
        check_nft()
    except NftError as exc:
        typer.echo(f"shoal agent: {exc}", err=True)
        raise typer.Exit(2) from None


def _hollow_options(settings: AgentSettings, index: int) -> RuntimeOptions:
    from controlplane.agent.fleet import hollow_state_dir
    from controlplane.agent.runtime_factory import RuntimeOptions

    base = settings.runtime
    return RuntimeOptions(
        name=base.name,
        advertise_addr=base.advertise_addr,
        state_dir=hollow_state_dir(settings.state_dir, index),
        hollow_cpus=base.hollow_cpus,
        hollow_memory=base.hollow_memory,
        hostname=f"{socket.gethostname()}-hollow-{index}",
    )


async def _discovery_url(settings: AgentSettings) -> str:
    """The store URL when --discovery was not given: join, or what the state dir holds."""
    from controlplane.agent.agent import AgentError
    from controlplane.agent.fleet import hollow_state_dir

    dirs = (
        [hollow_state_dir(settings.state_dir, i) for i in range(settings.hollow_nodes)]
        if settings.hollow_nodes > 1
        else [settings.state_dir]
    )
    if settings.join:
        assert settings.token is not None
        limit = asyncio.Semaphore(16)

        async def join_one(state_dir: Path) -> Identity:
            async with limit:
                return await joined_identity(
                    state_dir,
                    manager=settings.join or "",
                    token=settings.token or "",
                    hostname=settings.hostname or socket.gethostname(),
                    addr=settings.advertise_addr,
                    labels=settings.labels,
                )

        identities = await asyncio.gather(*(join_one(d) for d in dirs))
        return identities[0].discovery
    saved = await asyncio.to_thread(load_identity, dirs[0])
    if saved is None or not saved.discovery:
        raise AgentError(
            f"{dirs[0]} holds no cluster to rejoin: give --discovery URL, "
            "or --join MANAGER --token TOKEN"
        )
    return saved.discovery
