"""Every command's and option's help is shown as written: `--help` renders help text as
rich markup, which silently drops anything that reads as a tag, such as
"[default: ...]" (it once turned "This node's address [default: ...]." into
"This node's address .")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer.main
from rich.text import Text

from controlplane.cli.app import app


def commands(command: Any, path: str = "shoal") -> Iterator[tuple[str, Any]]:
    """Every command under `command` (typer's own click: duck-typed)."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, f"{path} {name}")


def test_no_help_text_is_eaten_by_markup() -> None:
    eaten: list[str] = []
    root = typer.main.get_command(app)
    seen = 0
    for path, command in commands(root):
        texts = [(path, command.help or "")]
        texts += [
            (f"{path} {param.name}", param.help or "")
            for param in command.params
            if param.param_type_name == "option"
        ]
        for where, text in texts:
            seen += 1
            if Text.from_markup(text).plain != text:
                eaten.append(f"{where}: {text!r} shows as {Text.from_markup(text).plain!r}")
    assert seen > 100  # the walk reached the subcommands' options
    assert not eaten, "\n".join(eaten)
