"""Naming services on the command line: the SERVICE arguments and their shell completion."""

from __future__ import annotations

from typing import Annotated

import typer

from controlplane.cli.client import completion_get


def complete_services(incomplete: str) -> list[str]:
    """Service names for the shell, asked from the manager (nothing if it is away)."""
    found = completion_get("/services") or []
    return [s["name"] for s in found if s["name"].startswith(incomplete)]


def complete_scale(incomplete: str) -> list[str]:
    """`web=` for `service scale`: the name, waiting for its count."""
    return [f"{name}=" for name in complete_services(incomplete.split("=", 1)[0])]


ServiceRef = Annotated[
    str,
    typer.Argument(metavar="SERVICE", help="Name or id.", autocompletion=complete_services),
]
ServiceRefs = Annotated[
    list[str],
    typer.Argument(metavar="SERVICE...", help="Names or ids.", autocompletion=complete_services),
]
