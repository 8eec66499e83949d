"""`shoal manager`: placeholder until the manager lands (being written this session)."""

from __future__ import annotations

import typer


def manager() -> None:
    """Not built yet."""
    typer.echo("shoal manager is not built yet", err=True)
    raise typer.Exit(1)
