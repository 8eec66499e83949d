"""`shoal manager`: one manager (REST API, mirror, leader election) in the foreground.

Run any number against one store: each serves the API and registers itself; one leads
and reconciles. SIGTERM or SIGINT stop it cleanly: it resigns (another manager leads at
once), deregisters, and finishes in-flight requests. Every option has an environment
variable, for systemd units and compose files.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controlplane.cli.running import logging_to_stderr, parse_log_level, run_until_signalled
from controlplane.reconciler import ReconcilerConfig
from controlplane.reconciler.config import LEADER_TXN_ITEMS
from discovery import DiscoveryError, InvalidStoreURL

# The manager (FastAPI, uvicorn, the API) is imported when the command runs, so that
# `shoal --help` and the other commands start without it.
if TYPE_CHECKING:
    from controlplane.manager.process import Manager

#: `controlplane.manager.config`'s defaults, repeated for the help text (a test checks
#: that they agree).
DEFAULT_LISTEN = "127.0.0.1:2377"
DEFAULT_LEASE_TTL = 10.0
#: The reconciler's default (one node TTL), repeated here for the help text.
DEFAULT_NODE_GRACE = ReconcilerConfig().node_grace


def manager(
    discovery: str = typer.Option(
        ...,
        "--discovery",
        envvar="SHOAL_DISCOVERY",
        metavar="URL",
        help="The cluster's store: etcd://host:2379/prefix, consul://host:8500/prefix, file:///dir.",
    ),
    listen: str = typer.Option(
        DEFAULT_LISTEN,
        "--listen",
        envvar="SHOAL_LISTEN",
        metavar="HOST:PORT",
        help="Where the REST API listens (port 0: any free port).",
    ),
    advertise_url: str | None = typer.Option(
        None,
        "--advertise-url",
        envvar="SHOAL_ADVERTISE_URL",
        metavar="URL",
        help="The API URL others use (default: http://<listen address>).",
    ),
    lease_ttl: float = typer.Option(
        DEFAULT_LEASE_TTL,
        "--lease-ttl",
        envvar="SHOAL_LEASE_TTL",
        min=0.1,
        metavar="SECONDS",
        help="TTL of the leader and registration leases: failover takes about this long.",
    ),
    node_grace: float = typer.Option(
        DEFAULT_NODE_GRACE,
        "--node-grace",
        envvar="SHOAL_NODE_GRACE",
        min=0.0,
        metavar="SECONDS",
        help="How long a node may be down before the leader replaces its tasks.",
    ),
    reconcile_txn_items: int | None = typer.Option(
        None,
        "--reconcile-txn-items",
        envvar="SHOAL_RECONCILE_TXN_ITEMS",
        min=1,
        metavar="N",
        help="The most compares plus operations the leader writes in one transaction: "
        "a new task takes 4, "
        "each transaction 1 more (the leader fence), and a task is never split, so 5 or "
        "less writes one task per transaction. Lower it to test a leader dying while it "
        "writes a plan.",
        show_default=f"the store's limit, at most {LEADER_TXN_ITEMS}",
    ),
    manager_id: str | None = typer.Option(
        None, "--id", envvar="SHOAL_MANAGER_ID", help="This manager's id (default: a new one)."
    ),
    agent_state_dir: Path | None = typer.Option(
        None,
        "--agent-state-dir",
        metavar="DIR",
        help="This host's agent state directory: the manager and this host's node share "
        "one id, so `node ls` shows the node as the leader (as docker's init host is).",
    ),
    docker_api: str | None = typer.Option(
        None,
        "--docker-api",
        envvar="SHOAL_DOCKER_API",
        metavar="HOST:PORT",
        help="Also serve the Docker Engine API here (e.g. 127.0.0.1:2375), for the docker "
        "CLI: docker -H tcp://HOST:PORT ps. It has no token: keep it on loopback, or give "
        "--tlscert, --tlskey and --tlscacert (docker --tlsverify).",
    ),
    tlscert: str | None = typer.Option(
        None,
        "--tlscert",
        metavar="FILE",
        help="Serve the API (and --docker-api) over HTTPS with this PEM certificate.",
    ),
    tlskey: str | None = typer.Option(
        None, "--tlskey", metavar="FILE", help="The PEM key of --tlscert."
    ),
    tlscacert: str | None = typer.Option(
        None,
        "--tlscacert",
        metavar="FILE",
        help="Require client certificates signed by this CA (as dockerd --tlsverify).",
    ),
    log_level: str = typer.Option(
        "info", "--log-level", envvar="SHOAL_LOG_LEVEL", help="debug, info, warning or error."
    ),
) -> None:
    """Run a manager in the foreground."""
    from controlplane.manager.config import ConfigError, ListenAddress, ManagerConfig
    from controlplane.manager.process import Manager, ManagerFailed
    from controlplane.tls import TlsFiles

    level = parse_log_level(log_level)
    try:
        address = ListenAddress.parse(listen)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--listen") from None
    if agent_state_dir is not None:
        if manager_id is not None:
            raise typer.BadParameter("give either --id or --agent-state-dir, not both")
        manager_id = host_node_id(agent_state_dir)
    config = ManagerConfig(
        discovery=discovery,
        listen=address,
        advertise_url=advertise_url,
        lease_ttl=lease_ttl,
        manager_id=manager_id,
        docker_api=docker_api,
        tls=TlsFiles(cert=tlscert, key=tlskey, cacert=tlscacert),
    )
    try:
        config.docker_api_address()
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--docker-api") from None
    try:
        config.tls_context()
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    reconciler_config = ReconcilerConfig(node_grace=node_grace, max_txn_items=reconcile_txn_items)
    try:
        with logging_to_stderr(level):
            asyncio.run(serve(Manager(config, reconciler_config=reconciler_config)))
    except (InvalidStoreURL, ConfigError) as exc:
        typer.echo(f"shoal manager: {exc}", err=True)
        raise typer.Exit(2) from None
    except (DiscoveryError, ManagerFailed) as exc:
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        typer.echo(f"shoal manager: {exc}{cause}", err=True)
        raise typer.Exit(1) from None


def host_node_id(state_dir: Path) -> str:
    """The id of the node this host's agent runs as; when the agent has not joined yet,
    an id is chosen now and saved in its state directory, which its join then claims."""
    from controlplane.agent.identity import (
        Identity,
        IdentityError,
        load_identity,
        new_node_id,
        save_identity,
    )

    try:
        saved = load_identity(state_dir)
        if saved is not None:
            return saved.node_id
        fresh = Identity(node_id=new_node_id(), cluster_id="", discovery="")
        save_identity(state_dir, fresh)
    except (IdentityError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--agent-state-dir") from None
    return fresh.node_id


async def serve(target: Manager) -> None:
    """Run `target` until SIGTERM or SIGINT, then let it shut down cleanly."""
    await run_until_signalled(target.run(), on_signal=target.stop)
