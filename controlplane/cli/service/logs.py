"""`shoal service logs`."""

from __future__ import annotations

import typer

from controlplane.cli.client import (
    DebugOption,
    HostOption,
    reported,
)
from controlplane.cli.service.names import ServiceRef


@reported
def logs(
    service: ServiceRef,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Not available yet: agents do not serve their containers' logs."""
    typer.echo(
        "shoal: service logs is not available yet: shoal agents do not serve container "
        "logs. Find the tasks' nodes and containers with `shoal service ps --no-trunc "
        f"{service}` and run `docker logs CONTAINER` on that node.",
        err=True,
    )
    raise typer.Exit(1)
