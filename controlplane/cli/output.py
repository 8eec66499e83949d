"""How results are printed: docker-like tables, `--format json`, `-q` for ids.

Tables look like docker's: upper-case headers, columns padded to their widest cell plus
three spaces, no borders, so `awk '{print $2}'` and eyes both work. `--format json`
prints what the API returned (a list for `ls`, a list of objects for `inspect`, as
docker does), so scripts read the same fields as the REST API documents. `-q` prints
one id per line and nothing else.

Times are shown as ages ("Running 5 minutes ago"), in the words docker uses for ages.

Progress (`ProgressDisplay`) goes to stderr, so that stdout stays the command's result
(an id, a name) for scripts: redrawn in place on a terminal, one line per change when
piped to a file or a CI log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Annotated, Any, Protocol

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from controlplane.durations import human_duration

COLUMN_GAP = 3

#: Where ages are measured from; tests freeze it so that "5 minutes ago" stays true.
clock: Callable[[], float] = time.time


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", help="table, or json (the API's objects)."),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Only print ids.")]
NoTruncOption = Annotated[bool, typer.Option("--no-trunc", help="Do not shorten ids.")]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Headers and rows as aligned text; the last column is not padded."""
    widths = [len(header) for header in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [
            cell if index == len(row) - 1 else cell.ljust(widths[index] + COLUMN_GAP)
            for index, cell in enumerate(row)
        ]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    typer.echo(table(headers, rows))


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False))


def print_ids(ids: Sequence[str]) -> None:
    for value in ids:
        typer.echo(value)


def short_id(value: str, *, no_trunc: bool = False, length: int = 12) -> str:
    return value if no_trunc else value[:length]


def ago(timestamp: float | None, *, now: float | None = None) -> str:
    """`timestamp` (epoch seconds) as "5 minutes ago"; "" when unknown."""
    if not timestamp:
        return ""
    elapsed = max(0.0, (clock() if now is None else now) - timestamp)
    return f"{human_duration(elapsed)} ago"


def capitalised(word: str) -> str:
    """`ready` -> `Ready`, `on-failure` -> `On-failure`: docker's status words."""
    return word[:1].upper() + word[1:]


def truncate(text: str, limit: int, *, no_trunc: bool = False) -> str:
    if no_trunc or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def count(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


# --- progress ---------------------------------------------------------------------------


class Progress(Protocol):
    """One service's progress, as `service.assess` reports it."""

    @property
    def summary(self) -> str: ...

    @property
    def desired(self) -> int: ...

    @property
    def slots(self) -> list[tuple[str, str, str]]: ...


class ProgressDisplay:
    """Progress on stderr: redrawn in place on a terminal, a line per change otherwise."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True, highlight=False)
        self.live: Live | None = None
        self.last: list[str] = []

    def show(self, results: Sequence[Progress]) -> None:
        if self.quiet:
            return
        if self.console.is_terminal:
            lines: list[str] = []
            for result in results:
                lines.append(result.summary.split("; ")[0])
                total = max(result.desired, len(result.slots))
                for label, state, note in result.slots:
                    where = f"{label}/{total}" if label.isdigit() else label[:12]
                    lines.append(f"  {where}: {state}" + (f"  {note}" if note else ""))
            text = Text("\n".join(lines))
            if self.live is None:
                self.live = Live(text, console=self.console, auto_refresh=False, transient=False)
                self.live.start()
            self.live.update(text, refresh=True)
            return
        summaries = [result.summary for result in results]
        for summary in summaries:
            if summary not in self.last:
                self.console.print(summary, soft_wrap=True)
        self.last = summaries

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def converged(self) -> None:
        if not self.quiet:
            self.console.print("verify: converged", soft_wrap=True)
