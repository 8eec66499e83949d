"""`shoal service logs`: what a service's tasks wrote, fetched by the manager from their
nodes, printed the way docker does:

    web.1.0f3c9a8b2d1e@node-1    | GET / 200

stdout lines go to stdout and stderr lines to stderr, so `2>/dev/null` works as with
docker. The manager answers `GET /services/{name}/logs` with one JSON object per line
(NDJSON); an object with an `error` key means one node's lines could not be fetched: it
is printed as a warning and the others go on. With `--follow` the answer stays open and
new lines are printed as they come, until Ctrl-C.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from controlplane.cli import output
from controlplane.cli.client import (
    CliError,
    DebugOption,
    HostOption,
    ManagerClient,
    reported,
    session,
)
from controlplane.cli.service.names import complete_services

SEPARATOR = "    | "


def check_tail(text: str) -> str:
    """`all` or a number of lines, as docker's `--tail` takes."""
    if text != "all" and not text.isdigit():
        raise typer.BadParameter(f"{text!r} is not a number of lines or 'all'", param_hint="--tail")
    return text


@reported
def logs(
    service: Annotated[
        str,
        typer.Argument(
            metavar="SERVICE|TASK",
            help="A service's name or id, or a task's id.",
            autocompletion=complete_services,
        ),
    ],
    tail: Annotated[
        str,
        typer.Option("--tail", "-n", metavar="N", help="Lines from the end of each task's logs."),
    ] = "all",
    timestamps: Annotated[
        bool, typer.Option("--timestamps", "-t", help="Show when each line was written.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    no_task_ids: Annotated[
        bool, typer.Option("--no-task-ids", help="Do not show task ids in the prefix.")
    ] = False,
    no_trunc: output.NoTruncOption = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Show the logs of a service's tasks (or of one task), read from their nodes."""
    params = {
        "tail": check_tail(tail),
        "timestamps": str(timestamps).lower(),
        "follow": str(follow).lower(),
    }
    with session(host, debug) as api:
        path = logs_path(api, service)
        not_served = (
            f"the manager at {api.target.host} does not serve logs (it has no {path}): "
            "it is older than this shoal; upgrade it"
        )
        with api.stream_lines(path, params=params, endless=follow, not_served=not_served) as lines:
            for text in lines:
                if text.strip():
                    show(parse_item(text), task_ids=not no_task_ids, no_trunc=no_trunc)


def logs_path(api: ManagerClient, ref: str) -> str:
    """Where the logs of `ref` are: a service's (name, id or prefix) or, as docker also
    takes, one task's; an unknown `ref` is reported as an unknown service."""
    try:
        return f"/services/{api.get(f'/services/{ref}')['name']}/logs"
    except CliError as unknown_service:
        if "not found" not in unknown_service.message:
            raise
        try:
            task = api.get(f"/tasks/{ref}")
        except CliError:
            raise unknown_service from None
        return f"/tasks/{task['id']}/logs"


def parse_item(text: str) -> dict[str, Any]:
    try:
        item = json.loads(text)
    except ValueError:
        item = None
    if not isinstance(item, dict):
        raise CliError(f"the manager sent a log line that is not a JSON object: {text[:80]!r}")
    return item


def show(item: dict[str, Any], *, task_ids: bool = True, no_trunc: bool = False) -> None:
    """Print one object of the manager's answer: a line, or a node's failure."""
    if "error" in item:
        where = item.get("node") or item.get("node_id") or "a node"
        task = output.short_id(str(item.get("task_id", "")), no_trunc=no_trunc)
        typer.echo(f"warning: no logs of task {task} from {where}: {item['error']}", err=True)
        return
    typer.echo(format_line(item, task_ids=task_ids, no_trunc=no_trunc), err=is_stderr(item))


def format_line(item: dict[str, Any], *, task_ids: bool = True, no_trunc: bool = False) -> str:
    """`[time ]service.slot.task@node    | line`, as docker prints it (a global task,
    without a slot, is named by its node's id)."""
    slot = item.get("slot")
    parts = [str(item["service"]), str(slot if slot is not None else item.get("node_id", ""))]
    if task_ids:
        parts.append(output.short_id(str(item["task_id"]), no_trunc=no_trunc))
    node = item.get("node") or item.get("node_id") or ""
    prefix = ".".join(parts) + f"@{node}"
    when = f"{item['time']} " if item.get("time") else ""
    return f"{when}{prefix}{SEPARATOR}{item.get('line', '')}"


def is_stderr(item: dict[str, Any]) -> bool:
    return item.get("stream") == "stderr"
