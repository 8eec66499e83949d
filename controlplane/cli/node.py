"""`shoal node`: list, inspect, update and remove the cluster's nodes.

A node is what an agent registered; `node ls` marks this machine's node with `*` (the
node whose identity is in the local agent's state directory, `SHOAL_STATE_DIR`), as
docker marks the node it is talking to.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from controlplane.cli import output
from controlplane.cli.client import (
    CliError,
    DebugOption,
    HostOption,
    completion_get,
    reported,
    session,
)
from controlplane.models import Availability, NodeRole
from scheduler.units import format_bytes, format_cpus

app = typer.Typer(
    name="node",
    help="Manage the cluster's nodes.",
    no_args_is_help=True,
)

DEFAULT_STATE_DIR = Path("/var/lib/shoal/agent")  # the agent's default (`shoal agent --help`)
HEADERS = ("ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS", "ENGINE VERSION")


def complete_nodes(incomplete: str) -> list[str]:
    """Node hostnames and ids for the shell, asked from the manager."""
    names = []
    for node in completion_get("/nodes") or []:
        names += [node["hostname"], node["id"]] if node.get("hostname") else [node["id"]]
    return [name for name in names if name.startswith(incomplete)]


NodeRefs = Annotated[
    list[str],
    typer.Argument(
        metavar="NODE...", help="Node ids, prefixes or hostnames.", autocompletion=complete_nodes
    ),
]


def this_node_id() -> str | None:
    """The id of the node the local agent runs as, if this machine runs one."""
    from controlplane.agent.identity import IdentityError, load_identity

    state_dir = Path(os.environ.get("SHOAL_STATE_DIR") or DEFAULT_STATE_DIR)
    try:
        identity = load_identity(state_dir)
    except (IdentityError, OSError):
        return None
    return identity.node_id if identity else None


def node_rows(nodes: list[dict[str, Any]], *, me: str | None) -> list[list[str]]:
    rows = []
    for node in nodes:
        manager = node.get("manager_status") or ""
        rows.append(
            [
                node["id"] + (" *" if node["id"] == me else ""),
                node.get("hostname") or "",
                output.capitalised(node["status"]),
                output.capitalised(node["availability"]),
                output.capitalised(manager),
                node.get("engine_version") or "",
            ]
        )
    return rows


@app.command("ls")
@reported
def list_nodes(
    quiet: output.QuietOption = False,
    fmt: output.FormatOption = output.OutputFormat.TABLE,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """List nodes: ID (* for this machine), HOSTNAME, STATUS, AVAILABILITY, MANAGER STATUS."""
    with session(host, debug) as api:
        nodes: list[dict[str, Any]] = api.get("/nodes")
    if quiet:
        output.print_ids([node["id"] for node in nodes])
    elif fmt is output.OutputFormat.JSON:
        output.print_json(nodes)
    else:
        output.print_table(HEADERS, node_rows(nodes, me=this_node_id()))


@app.command("inspect")
@reported
def inspect_nodes(
    nodes: NodeRefs,
    pretty: Annotated[bool, typer.Option("--pretty", help="Human-readable, not JSON.")] = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Show nodes in detail (JSON, or --pretty)."""
    with session(host, debug) as api:
        found = [api.get(f"/nodes/{ref}") for ref in nodes]
    if not pretty:
        output.print_json(found)
        return
    typer.echo("\n\n".join(pretty_node(node) for node in found))


def pretty_node(node: dict[str, Any], *, now: float | None = None) -> str:
    lines = [
        f"ID:\t\t\t{node['id']}",
        f"Hostname:\t\t{node.get('hostname') or '-'}",
        f"Joined at:\t\t{_when(node.get('joined'), now)}",
        "Status:",
        f" State:\t\t\t{output.capitalised(node['status'])}",
        f" Availability:\t\t{output.capitalised(node['availability'])}",
        f" Address:\t\t{node.get('addr') or '-'}",
        f"Role:\t\t\t{node['role']}",
    ]
    if node.get("manager_status"):
        lines.append(f"Manager Status:\t\t{output.capitalised(node['manager_status'])}")
    lines += [
        "Platform:",
        f" Operating System:\t{node.get('os') or '-'}",
        f" Architecture:\t\t{node.get('arch') or '-'}",
        "Resources:",
        f" CPUs:\t\t\t{format_cpus(int(node.get('nano_cpus') or 0))}",
        f" Memory:\t\t{format_bytes(int(node.get('memory_bytes') or 0))}",
        "Labels:",
        *[f" - {key}={value}" for key, value in sorted((node.get("labels") or {}).items())],
        "Engine Labels:",
        *[f" - {key}={value}" for key, value in sorted((node.get("engine_labels") or {}).items())],
        f"Runtime:\t\t{node.get('runtime') or '-'}",
        f"Engine Version:\t\t{node.get('engine_version') or '-'}",
        f"Agent Version:\t\t{node.get('agent_version') or '-'}",
    ]
    return "\n".join(line.expandtabs(8) for line in lines)


def _when(timestamp: float | None, now: float | None) -> str:
    if not timestamp:
        return "-"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
    return f"{stamp} ({output.ago(timestamp, now=now)})"


def parse_labels(items: list[str], *, option: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        labels[key.strip()] = value
    return labels


@app.command("update")
@reported
def update_node(
    node: Annotated[
        str,
        typer.Argument(
            metavar="NODE", help="Node id, prefix or hostname.", autocompletion=complete_nodes
        ),
    ],
    availability: Annotated[
        Availability | None,
        typer.Option(
            "--availability",
            help="active: takes tasks; pause: keeps its tasks, "
            "takes no new ones; drain: its tasks move elsewhere.",
        ),
    ] = None,
    role: Annotated[NodeRole | None, typer.Option("--role", help="worker or manager.")] = None,
    label_add: Annotated[
        list[str], typer.Option("--label-add", metavar="KEY=VALUE", help="Add or set a label.")
    ] = [],  # noqa: B006  (typer reads the default; it is never mutated)
    label_rm: Annotated[
        list[str], typer.Option("--label-rm", metavar="KEY", help="Remove a label.")
    ] = [],  # noqa: B006
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Change a node's availability, role or labels."""
    labels = parse_labels(label_add, option="--label-add")
    if availability is None and role is None and not labels and not label_rm:
        raise typer.BadParameter(
            "nothing to change: give --availability, --role, --label-add or --label-rm"
        )
    body: dict[str, Any] = {"labels_add": labels, "labels_remove": label_rm}
    if availability is not None:
        body["availability"] = availability.value
    if role is not None:
        body["role"] = role.value
    with session(host, debug) as api:
        updated = api.post(f"/nodes/{node}/update", body)
    typer.echo(updated["id"])


@app.command("rm")
@reported
def remove_nodes(
    nodes: NodeRefs,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Remove a node even while its agent runs.")
    ] = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Remove nodes from the cluster (a node that is up needs --force)."""
    failed = False
    with session(host, debug) as api:
        for ref in nodes:
            try:
                api.delete(f"/nodes/{ref}", params={"force": "true"} if force else None)
            except CliError as exc:  # report it, and go on with the others (as docker does)
                typer.echo(f"shoal: {exc.message.replace('force=true', '--force')}", err=True)
                failed = True
            else:
                typer.echo(ref)
    if failed:
        raise typer.Exit(1)
