"""`shoal agent`: placeholder until the agent lands (being written this session)."""

from __future__ import annotations

import typer


def agent() -> None:
    """Not built yet."""
    typer.echo("shoal agent is not built yet", err=True)
    raise typer.Exit(1)
