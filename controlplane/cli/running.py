"""Running a long-lived command in the foreground (`shoal manager`, `shoal agent`,
`shoal up`): its log on stderr while it runs, and SIGTERM or SIGINT turned into a clean
stop instead of a traceback.

Logging is set up for the command's run and undone when it returns: a handler is added
to the root logger and removed in `finally`, with the level put back. A command run
in-process (tests call commands through typer's CliRunner, whose stderr is closed
afterwards) then leaves nothing behind that would write to a closed stream later.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer

T = TypeVar("T")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def parse_log_level(text: str) -> int:
    """`debug`, `info`, `warning` or `error` (any case) -> the level; else a usage error."""
    level = logging.getLevelName(text.upper())
    if not isinstance(level, int):
        raise typer.BadParameter(f"unknown log level {text!r}", param_hint="--log-level")
    return level


@contextmanager
def logging_to_stderr(level: int) -> Iterator[None]:
    """Log records of `level` and above to stderr while the block runs; afterwards the
    root logger is as it was."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


async def run_until_signalled(main: Awaitable[T], *, on_signal: Callable[[], object]) -> T:
    """Await `main`, calling `on_signal` on each SIGTERM or SIGINT meanwhile (it should
    make `main` finish cleanly); the handlers are removed when `main` ends."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    try:
        return await main
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
