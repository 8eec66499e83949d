"""`shoal service ps` (and `stack ps`): tasks as a table, grouped by slot."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from controlplane.cli import output
from controlplane.cli.client import DebugOption, HostOption, ManagerClient, reported, session
from controlplane.cli.service.names import ServiceRefs

TASK_HEADERS = ("ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR")
ERROR_WIDTH = 40


def task_rows(
    tasks: list[dict[str, Any]],
    *,
    hostnames: dict[str, str],
    now: float | None = None,
    no_trunc: bool = False,
) -> list[list[str]]:
    """Tasks grouped by slot (or node, for global services), newest first in each group;
    older tasks of a slot are shown as ` \\_ name`, as docker does."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for task in tasks:
        slot = task.get("slot")
        key = str(slot) if slot is not None else task.get("node_id", "")
        groups.setdefault((task["service"], key), []).append(task)

    def order(item: tuple[tuple[str, str], list[dict[str, Any]]]) -> tuple[str, int, str]:
        (service, key), _ = item
        return (service, int(key) if key.isdigit() else 0, hostnames.get(key, key))

    rows = []
    for (service, key), members in sorted(groups.items(), key=order):
        members.sort(key=lambda t: (t.get("created") or 0.0, t["id"]), reverse=True)
        for index, task in enumerate(members):
            name = f"{service}.{key}" if key else service
            error = task.get("error") or (task.get("message") if task["state"] == "pending" else "")
            rows.append(
                [
                    output.short_id(task["id"], no_trunc=no_trunc),
                    name if index == 0 else f" \\_ {name}",
                    task.get("image", ""),
                    hostnames.get(task.get("node_id") or "", task.get("node_id") or ""),
                    output.capitalised(task["desired_state"]),
                    " ".join(
                        part
                        for part in (
                            output.capitalised(task["state"]),
                            output.ago(task.get("updated") or task.get("created"), now=now),
                        )
                        if part
                    ),
                    f'"{output.truncate(error, ERROR_WIDTH, no_trunc=no_trunc)}"' if error else "",
                ]
            )
    return rows


FilterOption = Annotated[
    list[str],
    typer.Option(
        "--filter",
        "-f",
        metavar="KEY=VALUE",
        help="desired-state=running|shutdown, or node=NODE (repeatable).",
    ),
]


def task_query(filters: list[str]) -> dict[str, str]:
    query: dict[str, str] = {}
    for item in filters:
        key, _, value = item.partition("=")
        if key == "desired-state" and value in ("running", "shutdown"):
            query["desired_state"] = value
        elif key == "node" and value:
            query["node"] = value
        else:
            raise typer.BadParameter(
                f"{item!r}: use desired-state=running, desired-state=shutdown or node=NODE",
                param_hint="--filter",
            )
    return query


@reported
def list_tasks(
    services: ServiceRefs,
    filters: FilterOption = [],  # noqa: B006
    quiet: output.QuietOption = False,
    fmt: output.FormatOption = output.OutputFormat.TABLE,
    no_trunc: output.NoTruncOption = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """List the tasks of services: where each runs, its state, and since when."""
    query = task_query(filters)
    with session(host, debug) as api:
        show_service_tasks(api, services, query=query, quiet=quiet, fmt=fmt, no_trunc=no_trunc)


def show_service_tasks(
    api: ManagerClient,
    services: list[str],
    *,
    query: dict[str, str],
    quiet: bool,
    fmt: output.OutputFormat,
    no_trunc: bool,
) -> None:
    """The body of `service ps` and `stack ps`: the tasks of `services` (names or ids)
    that match `query`, as ids (`quiet`), JSON, or the table."""
    tasks: list[dict[str, Any]] = []
    for ref in services:
        name = api.get(f"/services/{ref}")["name"]  # a 404 names the unknown service
        tasks.extend(api.get("/tasks", params={"service": name, **query}))
    if quiet:
        output.print_ids([output.short_id(t["id"], no_trunc=no_trunc) for t in tasks])
    elif fmt is output.OutputFormat.JSON:
        output.print_json(tasks)
    else:
        hostnames = {node["id"]: node.get("hostname") or node["id"] for node in api.get("/nodes")}
        output.print_table(TASK_HEADERS, task_rows(tasks, hostnames=hostnames, no_trunc=no_trunc))
