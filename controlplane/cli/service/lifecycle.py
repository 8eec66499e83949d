"""`shoal service scale`, `rollback` and `rm`."""

from __future__ import annotations

from typing import Annotated

import typer

from controlplane.cli.client import (
    CliError,
    DebugOption,
    HostOption,
    ManagerClient,
    reported,
    session,
)
from controlplane.cli.service.converge import wait_converged
from controlplane.cli.service.flags import Detach, Quiet
from controlplane.cli.service.names import ServiceRef, ServiceRefs, complete_scale


@reported
def scale(
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="SERVICE=REPLICAS...", help="e.g. web=5.", autocompletion=complete_scale
        ),
    ],
    detach: Detach = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Set the number of tasks of one or more replicated services."""
    wanted: dict[str, int] = {}
    for item in targets:
        name, sep, number = item.rpartition("=")
        if not sep or not name or not number.isdigit():
            raise typer.BadParameter(f"{item!r} is not SERVICE=REPLICAS (e.g. web=5)")
        wanted[name] = int(number)
    versions: dict[str, int] = {}
    failed = False
    with session(host, debug) as api:
        for name, count in wanted.items():
            try:
                scaled = api.post(f"/services/{name}/scale", {"replicas": count})
            except CliError as exc:
                typer.echo(f"shoal: {exc.message}", err=True)
                failed = True
                continue
            typer.echo(f"{scaled['name']} scaled to {count}")
            versions[scaled["name"]] = int(scaled["spec_version"])
        if versions and not detach:
            wait_converged(api, versions)
    if failed:
        raise typer.Exit(1)


@reported
def rollback(
    service: ServiceRef,
    detach: Detach = False,
    quiet: Quiet = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Go back to the service's previous spec."""
    with session(host, debug) as api:
        roll_back(api, service, detach=detach, quiet=quiet)


def roll_back(api: ManagerClient, service: str, *, detach: bool, quiet: bool) -> None:
    """`service rollback` and `service update --rollback`: paced by the rollback config."""
    rolled = api.post(f"/services/{service}/rollback")
    typer.echo(rolled["id"] if quiet else rolled["name"])
    if not detach:
        wait_converged(api, {rolled["name"]: int(rolled["spec_version"])}, quiet=quiet)


@reported
def remove(
    services: ServiceRefs,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Remove services; their tasks are stopped and removed."""
    with session(host, debug) as api:
        if not remove_services(api, services):
            raise typer.Exit(1)


def remove_services(api: ManagerClient, names: list[str], *, echo: bool = True) -> bool:
    """Delete each service (printing its name if `echo`); False when any failed. A
    failure is reported and the others are still removed, as docker does."""
    ok = True
    for name in names:
        try:
            api.delete(f"/services/{name}")
        except CliError as exc:
            typer.echo(f"shoal: {exc.message}", err=True)
            ok = False
        else:
            if echo:
                typer.echo(name)
    return ok
