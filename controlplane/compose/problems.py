"""What a compose file can be told: an error or a warning, at a file, a line and a key.

Users fix compose files in an editor, so every problem names the place the editor needs
(`docker-compose.yml:12`) and the key (`services.web.deploy.replicas`) before saying what
is wrong. Errors are collected rather than raised one at a time: a file with three typos
should need one round trip, not three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """A place in a source file; `line` counts from 1."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def dotted(path: Path) -> str:
    """`("services", "web", "ports", 0)` -> `services.web.ports[0]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding. `location` is None only when no line can be known (a missing file)."""

    location: Location | None
    path: Path
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        key = f"{dotted(self.path)}: " if self.path else ""
        return f"{where}{key}{self.message}"


class ComposeError(Exception):
    """The stack cannot be deployed; `problems` lists every error found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = in_file_order(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def in_file_order(problems: Sequence[Problem]) -> list[Problem]:
    """Files in the order they were given, lines in order within a file, no repeats."""
    files: dict[str, int] = {}
    for problem in problems:
        if problem.location is not None:
            files.setdefault(problem.location.file, len(files))

    def order(problem: Problem) -> tuple[int, int]:
        location = problem.location
        if location is None:
            return (-1, 0)
        return (files[location.file], location.line)

    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=order)
