"""`shoal service ls`: the services as a table."""

from __future__ import annotations

from typing import Any

from controlplane.cli import output
from controlplane.cli.client import DebugOption, HostOption, reported, session
from controlplane.models.service import ServiceMode

SERVICE_HEADERS = ("ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS")


def format_ports(ports: list[dict[str, Any]]) -> str:
    """`*:8080->80/tcp` for the routing mesh, `8080->80/tcp (host)` for host mode."""
    shown = []
    for port in ports:
        protocol = port.get("protocol", "tcp")
        target = port["target"]
        published = port.get("published")
        if published is None:
            shown.append(f"{target}/{protocol}")
        elif port.get("mode") == "host":
            shown.append(f"{published}->{target}/{protocol} (host)")
        else:
            shown.append(f"*:{published}->{target}/{protocol}")
    return ", ".join(shown)


def service_rows(services: list[dict[str, Any]], *, no_trunc: bool = False) -> list[list[str]]:
    rows = []
    for service in services:
        spec = service["spec"]
        replicas = f"{service['replicas']['running']}/{service['replicas']['desired']}"
        most = spec.get("placement", {}).get("max_replicas_per_node") or 0
        if most and spec["mode"] == ServiceMode.REPLICATED.value:
            replicas += f" (max {most} per node)"
        rows.append(
            [
                output.short_id(service["id"], no_trunc=no_trunc),
                service["name"],
                spec["mode"],
                replicas,
                spec["image"],
                format_ports(spec.get("ports", [])),
            ]
        )
    return rows


def show_services(
    services: list[dict[str, Any]], *, quiet: bool, fmt: output.OutputFormat, no_trunc: bool
) -> None:
    if quiet:
        output.print_ids([output.short_id(s["id"], no_trunc=no_trunc) for s in services])
    elif fmt is output.OutputFormat.JSON:
        output.print_json(services)
    else:
        output.print_table(SERVICE_HEADERS, service_rows(services, no_trunc=no_trunc))


@reported
def list_services(
    quiet: output.QuietOption = False,
    fmt: output.FormatOption = output.OutputFormat.TABLE,
    no_trunc: output.NoTruncOption = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """List services: ID, NAME, MODE, REPLICAS (running/desired), IMAGE, PORTS."""
    with session(host, debug) as api:
        services: list[dict[str, Any]] = api.get("/services")
    show_services(services, quiet=quiet, fmt=fmt, no_trunc=no_trunc)
