"""`shoal up`: a cluster on this machine, one manager and one agent, initialised, in the
foreground. The README's first command.

Both run in this one process, on one connection to the file store. One process, not
two children: `up` is the single-machine default, where one Ctrl-C should stop
everything, one log should tell the story, and there is nothing to gain from isolating
two halves that share a disk anyway. Nothing is lost by it: all state is in the store,
and the containers outlive the agent (a later `up` adopts them). On a real cluster the
two run apart (`shoal manager`, `shoal agent`), and nothing here is special to `up`
but the wiring.

First start: the cluster is initialised, the API token and join tokens are saved in the
user's config file (mode 0600, see `config`) with the API's URL, and the local agent
joins as a manager node whose id is also the manager's (so `node ls` shows it as the
leader). Later starts find all of that and just run. A lost config file is healed: `up`
can write the store, which is owning the cluster, so it mints a new API token (the old
one stops working) and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controlplane.agent.address import default_advertise_addr
from controlplane.agent.heartbeat import NodeIdConflict
from controlplane.agent.identity import (
    Identity,
    IdentityError,
    load_identity,
    new_node_id,
    save_identity,
)
from controlplane.agent.join import JoinError, joined_identity
from controlplane.agent.mesh import MeshConfig
from controlplane.agent.runtime.registry import UnknownRuntime
from controlplane.api.control import cluster as control
from controlplane.api.control.errors import Conflict
from controlplane.cli.config import ConfigError, config_path, load_config, save_config
from controlplane.cli.running import logging_to_stderr, parse_log_level, run_until_signalled
from controlplane.security import tokens
from controlplane.security.tokens import TokenKind
from discovery import DiscoveryError, Store, open_store

# The manager and the agent (FastAPI, uvicorn, Docker) are imported when `up` runs, so
# that `shoal --help` and the other commands start without them.
if TYPE_CHECKING:
    from controlplane.agent.agent import Agent
    from controlplane.manager.config import ListenAddress
    from controlplane.manager.process import Manager

DEFAULT_DATA_DIR = Path("/var/lib/shoal")
START_SECONDS = 60.0

log = logging.getLogger(__name__)


class UpError(Exception):
    """`shoal up` cannot start; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class UpSettings:
    data_dir: Path
    listen: ListenAddress
    runtime: str
    advertise_addr: str
    docker_host: str | None = None
    heartbeat: float = 5.0
    lease_ttl: float = 10.0

    @property
    def discovery(self) -> str:
        return f"file://{(self.data_dir / 'cluster').resolve()}"

    @property
    def agent_dir(self) -> Path:
        return self.data_dir / "agent"


@dataclass(slots=True)
class Credentials:
    api_token: str
    join_tokens: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    revision: int = 0  # of the last write made to get these (0: none)


@dataclass(frozen=True, slots=True)
class Running:
    """What `on_ready` is told once the cluster serves."""

    api_url: str
    manager_id: str
    node_id: str
    discovery: str
    config_file: Path
    notes: tuple[str, ...]


def up(
    data_dir: Path = typer.Option(
        DEFAULT_DATA_DIR,
        "--data-dir",
        envvar="SHOAL_DATA_DIR",
        help="Holds the cluster's store (cluster/) and the node's identity (agent/).",
    ),
    listen: str = typer.Option(
        "127.0.0.1:2377",
        "--listen",
        envvar="SHOAL_LISTEN",
        metavar="HOST:PORT",
        help="Where the REST API listens.",
    ),
    runtime: str = typer.Option(
        "docker",
        "--runtime",
        envvar="SHOAL_RUNTIME",
        help="docker, or process (tasks as local processes), or hollow (pretend).",
    ),
    advertise_addr: str | None = typer.Option(
        None,
        "--advertise-addr",
        envvar="SHOAL_ADVERTISE_ADDR",
        help="This node's address (default: the first non-loopback one).",
    ),
    docker_host: str | None = typer.Option(
        None, "--docker-host", envvar="DOCKER_HOST", help="The Docker Engine to use."
    ),
    log_level: str = typer.Option(
        "warning", "--log-level", envvar="SHOAL_LOG_LEVEL", help="debug, info, warning or error."
    ),
) -> None:
    """Run a one-machine cluster (a manager and a node) in the foreground."""
    from controlplane.agent.agent import AgentError
    from controlplane.agent.runtime_factory import check_runtime_name
    from controlplane.manager.config import ConfigError as ListenError
    from controlplane.manager.config import ListenAddress
    from controlplane.manager.process import ManagerFailed

    level = parse_log_level(log_level)
    try:
        address = ListenAddress.parse(listen)
        check_runtime_name(runtime)
    except ListenError as exc:
        raise typer.BadParameter(str(exc), param_hint="--listen") from None
    except UnknownRuntime as exc:
        raise typer.BadParameter(str(exc), param_hint="--runtime") from None
    settings = UpSettings(
        data_dir=data_dir,
        listen=address,
        runtime=runtime,
        advertise_addr=advertise_addr or default_advertise_addr(),
        docker_host=docker_host,
    )
    try:
        with logging_to_stderr(level):
            asyncio.run(serve(settings))
    except (
        UpError,
        ManagerFailed,
        ListenError,
        ConfigError,
        DiscoveryError,
        AgentError,
        NodeIdConflict,
        JoinError,
        IdentityError,
    ) as exc:
        typer.echo(f"shoal up: {exc}", err=True)
        raise typer.Exit(1) from None


async def serve(settings: UpSettings) -> None:
    """`run_up` until SIGTERM or SIGINT, printing where the API is once it serves."""
    stop = asyncio.Event()
    running = run_up(settings, stop=stop, on_ready=print_welcome)
    await run_until_signalled(running, on_signal=stop.set)


async def run_up(
    settings: UpSettings,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[Running], None] = lambda running: None,
) -> None:
    """Start the manager, initialise and join if needed, run the agent, until `stop`.

    `stop` is heeded at every step, also while starting: an agent waiting for a Docker
    Engine that is not there yet must not make Ctrl-C useless."""
    from controlplane.manager.config import ManagerConfig
    from controlplane.manager.process import Manager

    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = await open_store(settings.discovery)
    try:
        node_id = await _node_id(settings.agent_dir)
        manager = Manager(
            ManagerConfig(
                discovery=settings.discovery,
                listen=settings.listen,
                lease_ttl=settings.lease_ttl,
                manager_id=node_id,
            ),
            store=store,
        )
        managing = asyncio.create_task(manager.run(), name="manager")
        agent = _agent(settings, store)
        running: list[asyncio.Task[None]] = [managing]
        stopping = asyncio.create_task(stop.wait())
        try:
            starting = asyncio.create_task(
                _start(settings, store=store, manager=manager, managing=managing, agent=agent),
                name="start",
            )
            done, _ = await asyncio.wait(
                {starting, managing, stopping}, return_when=asyncio.FIRST_COMPLETED
            )
            if starting not in done:
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                if stopping in done:
                    return  # stopped while starting: the finally clauses tidy up
                managing.result()
                raise UpError("the manager stopped while starting")
            credentials = starting.result()
            running.append(asyncio.create_task(agent.run(), name="agent"))
            saved = save_credentials(manager.api_url, credentials)
            on_ready(
                Running(
                    api_url=manager.api_url,
                    manager_id=manager.id,
                    node_id=agent.node_id,
                    discovery=settings.discovery,
                    config_file=saved,
                    notes=tuple(credentials.notes),
                )
            )
            done, _ = await asyncio.wait({*running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in done & set(running):
                task.result()  # a failure of either half ends `up`, with its reason
                raise UpError(f"the {task.get_name()} stopped on its own")
        finally:
            stopping.cancel()
            # the node leaves first: its lease is revoked at once
            await agent.stop()
            manager.stop()
            await asyncio.gather(*running, return_exceptions=True)
    finally:
        await store.close()


def _agent(settings: UpSettings, store: Store) -> Agent:
    from controlplane.agent.agent import Agent
    from controlplane.agent.runtime_factory import RuntimeOptions, runtime_factory

    return Agent(
        runtime=runtime_factory(
            RuntimeOptions(
                name=settings.runtime,
                advertise_addr=settings.advertise_addr,
                state_dir=settings.agent_dir,
                docker_host=settings.docker_host,
            )
        ),
        state_dir=settings.agent_dir,
        advertise_addr=settings.advertise_addr,
        store=store,
        heartbeat_period=settings.heartbeat,
        api_port=0,  # the agent endpoint (logs, inspect) on any free port
        mesh=MeshConfig(),  # ingress-published ports answer on this machine too
    )


async def _start(
    settings: UpSettings,
    *,
    store: Store,
    manager: Manager,
    managing: asyncio.Task[None],
    agent: Agent,
) -> Credentials:
    """The start-up steps, in order: the API serves, the cluster exists, the node has
    joined and registered. Returns the credentials to save."""
    await _until_ready(manager, managing)
    credentials = await ensure_initialised(store, api_url=manager.api_url)
    # The API checks tokens against its mirror: let it see a new one first.
    await manager.wait_for_revision(credentials.revision, timeout=START_SECONDS)
    await _join(settings, store=store, api_url=manager.api_url, credentials=credentials)
    await agent.start()  # waits, saying so, while the runtime does not answer
    return credentials


async def _node_id(agent_dir: Path) -> str:
    """This node's id, chosen now if it has none, so the manager can share it."""
    saved = await asyncio.to_thread(load_identity, agent_dir)
    if saved is not None:
        return saved.node_id
    fresh = Identity(node_id=new_node_id(), cluster_id="", discovery="")
    await asyncio.to_thread(save_identity, agent_dir, fresh)
    return fresh.node_id


async def _until_ready(manager: Manager, managing: asyncio.Task[None]) -> None:
    ready = asyncio.create_task(manager.ready.wait())
    done, _ = await asyncio.wait(
        {ready, managing}, timeout=START_SECONDS, return_when=asyncio.FIRST_COMPLETED
    )
    ready.cancel()
    if managing in done:
        managing.result()
        raise UpError("the manager stopped while starting")
    if not done:
        raise UpError(f"the manager did not start within {START_SECONDS:.0f} s")


async def ensure_initialised(store: Store, *, api_url: str) -> Credentials:
    """The cluster's API token (and join tokens when known), initialising it if needed."""
    with contextlib.suppress(Conflict):  # another `up` or `swarm init` may win the race
        made = await control.init_cluster(store, now=time.time())
        issued = made.tokens
        return Credentials(
            api_token=issued.api,
            join_tokens={"worker": issued.worker, "manager": issued.manager},
            revision=made.revision,
        )
    record = await control.load_cluster(store)
    if record is None:
        raise UpError("the cluster record vanished while starting; run shoal up again")
    saved = load_config()
    credentials = Credentials(api_token=saved.token or "")
    if not (saved.token and tokens.api_token_valid(record, saved.token)):
        credentials.api_token, credentials.revision = await control.rotate_token(
            store, kind=TokenKind.API
        )
        credentials.notes.append(
            f"{config_path()} held no valid API token for cluster {record.id}, so a new one "
            "was made; the old one no longer works"
        )
    for role, token in saved.join_tokens.items():
        if tokens.join_role(record, token) is not None:
            credentials.join_tokens[role] = token
    return credentials


async def _join(
    settings: UpSettings, *, store: Store, api_url: str, credentials: Credentials
) -> None:
    """Join the local node through the API, as any node does, unless it already has."""
    saved = await asyncio.to_thread(load_identity, settings.agent_dir)
    if saved is not None and saved.discovery:
        return
    token = credentials.join_tokens.get("manager")
    if token is None:  # not known here any more: make a new one (we own the store)
        token, _ = await control.rotate_token(store, kind=TokenKind.MANAGER)
        credentials.join_tokens["manager"] = token
    await joined_identity(
        settings.agent_dir,
        manager=api_url,
        token=token,
        hostname=socket.gethostname(),
        addr=settings.advertise_addr,
    )


def save_credentials(api_url: str, credentials: Credentials) -> Path:
    config = load_config()
    config.host = api_url
    config.token = credentials.api_token
    config.join_tokens = {**config.join_tokens, **credentials.join_tokens}
    return save_config(config)


def print_welcome(running: Running) -> None:
    token_command = (
        "python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"token\"])' "
        f"{running.config_file}"
    )
    for note in running.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(
        f"shoal is up: the API is at {running.api_url} (docs: {running.api_url}/docs)\n"
        f"  manager {running.manager_id} and node {running.node_id} run in this process\n"
        f"  store {running.discovery}\n"
        f"  the API token is saved in {running.config_file} (mode 0600)\n"
        "\n"
        "Try, in another terminal:\n"
        "  shoal service create --name web --replicas 2 nginx\n"
        "  shoal service ls\n"
        "  shoal service ps web\n"
        "  shoal service logs web\n"
        f'  curl -H "Authorization: Bearer $({token_command})" {running.api_url}/services\n'
        "\n"
        "Ctrl-C stops shoal (containers keep running; `shoal up` again carries on)."
    )
