"""Reading a process task's log file: the last lines, then (following) what it appends.

The process runtime sends a task's stdout and stderr to one file, so every line is
reported as `stdout`, and without a time: the file keeps neither.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

from controlplane.agent.runtime.base import LogLine

#: How often a followed log file is looked at again.
FOLLOW_POLL_SECONDS = 0.2


def _last_lines(path: Path, tail: int | None) -> tuple[list[str], int]:
    """The last `tail` complete lines (None: all) and the offset after them."""
    with path.open("rb") as file:
        data = file.read()
    end = data.rfind(b"\n") + 1  # a partial last line waits for its newline
    lines = data[:end].decode(errors="replace").split("\n")[:-1]
    kept = list(deque(lines, maxlen=tail)) if tail is not None else lines
    return kept, end


async def read_log_file(path: Path, *, tail: int | None, follow: bool) -> AsyncIterator[LogLine]:
    lines, offset = await asyncio.to_thread(_last_lines, path, tail)
    for line in lines:
        yield LogLine(stream="stdout", line=line)
    pending = b""
    while follow:
        await asyncio.sleep(FOLLOW_POLL_SECONDS)
        chunk = await asyncio.to_thread(_read_from, path, offset)
        offset += len(chunk)
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield LogLine(stream="stdout", line=raw.decode(errors="replace"))


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read()
    except FileNotFoundError:
        return b""
