"""Reading a task's container through the engine: its logs, its inspect, the images.

What the agent's endpoint serves for the Docker runtime, kept apart from the task
lifecycle in `docker`. Only the SDK's public calls are used. The engine multiplexes a
container's stdout and stderr on one stream whose frames the SDK merges, so each stream
is read on its own, with the engine's timestamps, and the two are merged by time: the
order is the order the engine stamped the lines in.

Following runs each stream's blocking read in a daemon thread feeding an asyncio queue;
closing the iterator closes both engine streams, which ends the threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Literal

from controlplane.agent.runtime.base import LogLine

Stream = Literal["stdout", "stderr"]
STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")


def _split_stamp(text: str) -> tuple[str, str]:
    """`2026-11-26T09:03:36.12Z hello` -> (the stamp, `hello`)."""
    stamp, _, line = text.partition(" ")
    return stamp, line


def sort_key(stamp: str) -> str:
    """RFC 3339 with nanoseconds whose trailing zeros the engine trims: pad the fraction
    so that the strings compare in time order."""
    head, dot, rest = stamp.partition(".")
    if not dot:
        return stamp.removesuffix("Z") + ".000000000"
    digits = rest.removesuffix("Z")
    return f"{head}.{digits:0<9}"


def _line(stream: Stream, text: str, *, timestamps: bool) -> tuple[str, LogLine]:
    stamp, line = _split_stamp(text)
    return sort_key(stamp), LogLine(stream=stream, line=line, time=stamp if timestamps else None)


def read_logs(api: Any, container_id: str, *, tail: int | None, timestamps: bool) -> list[LogLine]:
    """The last `tail` lines (None: all) of both streams, merged in time order."""
    stamped: list[tuple[str, LogLine]] = []
    for stream in STREAMS:
        raw: bytes = api.logs(
            container_id,
            stdout=stream == "stdout",
            stderr=stream == "stderr",
            timestamps=True,
            tail="all" if tail is None else tail,
        )
        for text in _lines(raw.decode(errors="replace")):
            stamped.append(_line(stream, text, timestamps=timestamps))
    stamped.sort(key=lambda item: item[0])
    lines = [line for _, line in stamped]
    return lines if tail is None else lines[len(lines) - tail :] if tail else []


def _lines(text: str) -> Iterator[str]:
    pieces = text.split("\n")
    if pieces and pieces[-1] == "":
        pieces.pop()
    yield from pieces


async def follow_logs(
    api: Any, container_id: str, *, tail: int | None, timestamps: bool
) -> AsyncIterator[LogLine]:
    """The last `tail` lines of each stream, then every new line, until closed."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[LogLine | None] = asyncio.Queue()
    streams: list[Any] = []
    for stream in STREAMS:
        streams.append(
            await asyncio.to_thread(
                api.logs,
                container_id,
                stdout=stream == "stdout",
                stderr=stream == "stderr",
                timestamps=True,
                stream=True,
                follow=True,
                tail="all" if tail is None else tail,
            )
        )

    def pump(stream: Stream, chunks: Iterable[bytes]) -> None:
        pending = ""
        try:
            for chunk in chunks:
                pending += chunk.decode(errors="replace")
                *complete, pending = pending.split("\n")
                for text in complete:
                    loop.call_soon_threadsafe(
                        queue.put_nowait, _line(stream, text, timestamps=timestamps)[1]
                    )
        except Exception:  # the stream was closed under us: the iterator is done
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(queue.put_nowait, None)

    for stream, chunks in zip(STREAMS, streams, strict=True):
        threading.Thread(
            target=pump, args=(stream, chunks), name=f"shoal-logs-{stream}", daemon=True
        ).start()
    ended = 0
    try:
        while ended < len(STREAMS):
            item = await queue.get()
            if item is None:
                ended += 1
                continue
            yield item
    finally:
        for chunks in streams:
            with contextlib.suppress(Exception):
                chunks.close()


def image_summaries(api: Any) -> list[dict[str, Any]]:
    """The engine's `/images/json`, as it answers it."""
    images: list[dict[str, Any]] = api.images()
    return images
