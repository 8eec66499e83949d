"""`shoal swarm`: create a cluster, join hosts to it, manage its join tokens, leave it.

`init` asks a running manager to create the cluster (with `--discovery URL` it first
starts one in the background if none answers), saves the API token in the config file
(mode 0600, see `config`) so later commands on this machine need nothing else, and
prints the command to paste on other hosts, as `docker swarm init` does.

The manager keeps only hashes of the join tokens, so it can show a token once: when it
is made (`init`, `join-token --rotate`). The CLI saves the last ones it was shown in the
config file, and `join-token` without `--rotate` prints those.

`join` is `shoal agent --join MANAGER --token T` in docker's words: it runs this host's
agent in the foreground. `leave` forgets this host's node identity and removes the node
from the cluster.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from controlplane.cli import output
from controlplane.cli.client import (
    CliError,
    DebugOption,
    HostOption,
    ManagerClient,
    Target,
    reported,
    resolve_target,
    session,
)
from controlplane.cli.config import ConfigError, config_path, load_config, save_config
from controlplane.models import NodeRole

app = typer.Typer(name="swarm", help="Create a cluster, join it, leave it.", no_args_is_help=True)

MANAGER_START_SECONDS = 20.0
StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar="SHOAL_STATE_DIR",
        help="The local agent's state directory (default: /var/lib/shoal/agent).",
        show_default=False,
    ),
]


# --- init ---------------------------------------------------------------------------------


@app.command("init")
@reported
def init(
    advertise_addr: Annotated[
        str | None,
        typer.Option(
            "--advertise-addr",
            metavar="ADDR[:PORT]",
            help="The address other hosts reach the manager at (for the join command).",
        ),
    ] = None,
    discovery: Annotated[
        str | None,
        typer.Option(
            "--discovery",
            metavar="URL",
            help="If no manager answers at --host, start one in the background on this store.",
        ),
    ] = None,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Create the cluster through a manager; print the join command for other hosts."""
    target = resolve_target(host)
    if discovery:
        _ensure_manager(target, discovery)
    api = ManagerClient(target, debug=debug)
    try:
        answer = api.post("/swarm/init")
    except CliError as exc:
        if "already initialised" in exc.message:
            raise CliError(
                f"the cluster behind {target.host} is already initialised; to add a host, "
                "run `shoal swarm join-token worker` on the machine that initialised it"
            ) from None
        raise
    finally:
        api.close()
    tokens = answer["join_tokens"]
    try:
        saved: Path | None = _save(target.host, answer["api_token"], tokens)
    except ConfigError as exc:
        typer.echo(f"warning: {exc}", err=True)
        saved = None
    address = join_address(advertise_addr, target.host)
    typer.echo(f"Cluster {answer['cluster_id']} initialised through {target.host}.\n")
    typer.echo("To join a host to it as a worker, run this on that host:\n")
    typer.echo(f"    {join_command(tokens['worker'], address)}\n")
    typer.echo(
        "To join a manager node, run `shoal swarm join-token manager` and follow its instructions."
    )
    if saved is not None:
        typer.echo(f"The API token is saved in {saved} (mode 0600) for shoal commands here.")
    else:
        typer.echo(
            f"The API token (shown once; keep it): {answer['api_token']}\n"
            "Set SHOAL_TOKEN to it for shoal commands."
        )
    if _loopback(address):
        typer.echo(
            f"note: {address} is a loopback address: other hosts cannot reach it. Run the "
            "manager with --listen 0.0.0.0:2377, and give --advertise-addr.",
            err=True,
        )


def _save(host: str, api_token: str, tokens: dict[str, str]) -> Path:
    config = load_config()
    config.host, config.token = host, api_token
    config.join_tokens = {"worker": tokens["worker"], "manager": tokens["manager"]}
    return save_config(config)


def join_address(advertise_addr: str | None, host: str) -> str:
    """`HOST:PORT` to print in the join command: --advertise-addr (the manager's port
    when it gives none), else the host and port of the manager's URL."""
    url = urlsplit(host)
    port = url.port or 2377
    text = (advertise_addr or url.hostname or "127.0.0.1").strip()
    if text.startswith("["):  # [v6] or [v6]:port
        return text if "]:" in text else f"{text}:{port}"
    if text.count(":") > 1:  # a bare IPv6 address
        return f"[{text}]:{port}"
    return text if ":" in text else f"{text}:{port}"


def join_command(token: str, address: str) -> str:
    return f"shoal swarm join --token {shlex.quote(token)} {address}"


def _loopback(address: str) -> bool:
    hostname = urlsplit(f"//{address}").hostname or ""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _ensure_manager(target: Target, discovery: str) -> None:
    """Start `shoal manager` in the background when nothing answers at `target`."""
    probe = ManagerClient(target, timeout=2.0)
    try:
        probe.get("/health")
        return
    except CliError:
        pass
    finally:
        probe.close()
    url = urlsplit(target.host)
    listen = f"{url.hostname}:{url.port or 2377}"
    log_dir = config_path().parent
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = log_dir / "manager.log"
    argv = [sys.executable, "-c", "from controlplane.cli import main; main()"]
    argv += ["manager", "--discovery", discovery]
    argv += ["--listen", listen]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + MANAGER_START_SECONDS
    probe = ManagerClient(target, timeout=1.0)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise CliError(
                    f"the manager exited at once (code {process.returncode}); see {log_path}"
                )
            with contextlib.suppress(CliError):
                probe.get("/health")
                typer.echo(
                    f"Started a manager (pid {process.pid}) at {target.host} on {discovery}; "
                    f"its log is {log_path}"
                )
                return
            time.sleep(0.2)
    finally:
        probe.close()
    raise CliError(f"the manager did not answer at {target.host} within 20 s; see {log_path}")


# --- join, join-token, leave ----------------------------------------------------------------


@app.command("join")
@reported
def join(
    manager: Annotated[str, typer.Argument(metavar="MANAGER", help="HOST:PORT of a manager.")],
    token: Annotated[str, typer.Option("--token", envvar="SHOAL_JOIN_TOKEN", help="A join token.")],
    advertise_addr: Annotated[
        str | None,
        typer.Option("--advertise-addr", help="The address others reach this node at."),
    ] = None,
    state_dir: StateDir = None,
    runtime: Annotated[
        str | None, typer.Option("--runtime", help="docker, process or hollow (default: docker).")
    ] = None,
    label: Annotated[
        list[str], typer.Option("--label", metavar="KEY=VALUE", help="A node label (repeatable).")
    ] = [],  # noqa: B006  (typer's default; never mutated)
) -> None:
    """Make this host a node of the cluster: runs `shoal agent --join` in the foreground."""
    from controlplane.cli.agent import agent as agent_command

    argv = ["--join", manager, "--token", token]
    for flag, value in (("--advertise-addr", advertise_addr), ("--runtime", runtime)):
        if value:
            argv += [flag, value]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    for item in label:
        argv += ["--label", item]
    command_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    command_app.command()(agent_command)
    command = typer.main.get_command(command_app)
    command.main(args=argv, prog_name="shoal swarm join", standalone_mode=True)


@app.command("join-token")
@reported
def join_token(
    role: Annotated[NodeRole, typer.Argument(help="worker or manager.")],
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Replace the token; the old one stops working.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the token.")] = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Print the command (or with -q the token) that joins a host in this role."""
    with session(host, debug) as api:
        if rotate:
            token = api.post("/swarm/join-token/rotate", {"role": role.value})["token"]
            _remember(role, token, api.target.host)
        else:
            token = _remembered(role)
        if quiet:
            typer.echo(token)
            return
        if rotate:
            typer.echo(f"The {role.value} join token was replaced; the old one no longer works.\n")
        typer.echo(f"To join a host as a {role.value}, run this on that host:\n")
        typer.echo(f"    {join_command(token, join_address(None, api.target.host))}")


def _remembered(role: NodeRole) -> str:
    try:
        token = load_config().join_tokens.get(role.value)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if not token:
        raise CliError(
            f"no {role.value} join token is saved here (the manager keeps only a hash of it, "
            f"so it shows a token once); make a new one with "
            f"`shoal swarm join-token --rotate {role.value}`"
        )
    return token


def _remember(role: NodeRole, token: str, host: str) -> None:
    try:
        config = load_config()
        if config.host in (None, host):
            config.join_tokens[role.value] = token
            save_config(config)
    except ConfigError as exc:
        typer.echo(f"warning: the new token is not saved: {exc}", err=True)


@app.command("leave")
@reported
def leave(
    force: Annotated[
        bool,
        typer.Option(
            "--force", "-f", help="Leave even if the agent still runs or no manager answers."
        ),
    ] = False,
    state_dir: StateDir = None,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Take this host out of the cluster: remove its node and forget its identity.

    Stop the agent first (it would otherwise keep the node alive); `--force` removes the
    node anyway, and forgets the identity even when no manager can be asked.
    """
    from controlplane.agent.identity import IdentityError, load_identity, node_file
    from controlplane.cli.node import DEFAULT_STATE_DIR

    directory = state_dir or DEFAULT_STATE_DIR
    try:
        identity = load_identity(directory)
    except IdentityError as exc:
        raise CliError(str(exc)) from None
    if identity is None:
        raise CliError(f"this host is not in a cluster (no node identity in {directory})")
    api = ManagerClient(resolve_target(host), debug=debug)
    try:
        api.delete(f"/nodes/{identity.node_id}", params={"force": "true"} if force else None)
    except CliError as exc:
        if "is up" in exc.message and not force:
            raise CliError(
                f"node {identity.node_id} is still up: stop its agent first, or leave "
                "anyway with --force"
            ) from None
        if not force:
            raise
        typer.echo(f"warning: the node stays in the cluster's list: {exc.message}", err=True)
    finally:
        api.close()
    try:
        node_file(directory).unlink()
    except OSError as exc:
        raise CliError(f"cannot remove {node_file(directory)}: {exc.strerror}") from None
    typer.echo(f"Node {identity.node_id} left the cluster.")


# --- info ---------------------------------------------------------------------------------


@app.command("info")
@reported
def info(
    fmt: output.FormatOption = output.OutputFormat.TABLE,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """The cluster at a glance: its leader, managers, nodes, services and tasks."""
    with session(host, debug) as api:
        health = api.get("/health")
        summary: dict[str, Any] = api.get("/swarm")
    if fmt is output.OutputFormat.JSON:
        output.print_json({"manager": health, **summary})
        return
    typer.echo(describe_swarm(api.target.host, health, summary))


def describe_swarm(host: str, health: dict[str, Any], summary: dict[str, Any]) -> str:
    role = "the leader" if health.get("leader") else "not the leader"
    leader = summary.get("leader")
    created = summary.get("created")
    rows = [
        ("Cluster ID", summary.get("cluster_id") or "(not initialised)"),
        ("Created", output.ago(created) if created else "-"),
        ("Manager", f"{host} ({health.get('manager_id')}, {role}, shoal {health.get('version')})"),
        ("Leader", f"{leader['manager_id']} at {leader['api_url']}" if leader else "(none)"),
        ("Managers", _counted(_by_reachability(summary.get("managers", [])))),
        ("Nodes", _counted(summary.get("nodes", {}))),
        ("Services", str(summary.get("services", 0))),
        ("Tasks", _counted(summary.get("tasks", {}))),
    ]
    return "\n".join(f"{label + ':':<12}{value}" for label, value in rows)


def _by_reachability(managers: list[dict[str, Any]]) -> dict[str, int]:
    """Managers counted by whether they answer the manager asked (itself always does)."""
    counts = {"reachable": 0, "unreachable": 0}
    for manager in managers:
        reachability = str(manager.get("reachability") or "reachable")
        counts[reachability] = counts.get(reachability, 0) + 1
    return counts


def _counted(counts: dict[str, int]) -> str:
    """`{"ready": 2, "down": 1}` -> `3 (2 ready, 1 down)`."""
    total = sum(counts.values())
    parts = [f"{number} {state}" for state, number in counts.items() if number]
    return f"{total} ({', '.join(parts)})" if parts else str(total)
