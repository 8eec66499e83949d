"""The agent endpoint's routes; every one needs `Authorization: Bearer <secret>`.

    GET  /tasks/{task_id}/logs?tail=all&timestamps=false&follow=false   NDJSON lines
    GET  /tasks/{task_id}/inspect                                        the engine's JSON
    POST /tasks/{task_id}/kill?signal=SIGKILL                            204
    POST /tasks/{task_id}/stop?t=10                                      204
    GET  /images                                                         the engine's list

A log line is `{"stream": "stdout"|"stderr", "line": str, "time": str|null}`. A task
this node has no container for is a 404, a runtime that cannot do it a 501; both say
why in `{"detail": ...}`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from controlplane.agent.runtime import LogLine, NotSupported, Runtime, UnknownTask

TaskId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
SIGNAL_NAME = r"^(SIG)?[A-Z0-9+-]{1,16}$|^[0-9]{1,2}$"


def parse_tail(text: str) -> int | None:
    """`all` (None) or a count of lines; `ValueError` naming the field otherwise."""
    if text == "all":
        return None
    if not text.isdigit():
        raise ValueError(f"tail must be a number of lines or 'all', not {text!r}")
    return int(text)


def create_agent_app(*, runtime: Runtime, secret: str) -> FastAPI:
    app = FastAPI(title="shoal agent", openapi_url=None, docs_url=None, redoc_url=None)

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, secret):
            raise HTTPException(401, "this endpoint needs the agent's bearer secret")

    async def unknown(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"no container for task {exc} on this node"}, 404)

    async def unsupported(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 501)

    app.add_exception_handler(UnknownTask, unknown)
    app.add_exception_handler(NotSupported, unsupported)
    guard = [Depends(authorized)]

    @app.get("/tasks/{task_id}/logs", dependencies=guard)
    async def logs(
        task_id: TaskId,
        tail: str = "all",
        timestamps: bool = False,
        follow: bool = False,
    ) -> StreamingResponse:
        try:
            count = parse_tail(tail)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        lines = runtime.logs(task_id, tail=count, timestamps=timestamps, follow=follow)
        first = await _first(lines)  # errors (unknown task) become a status, not a cut stream
        return StreamingResponse(_ndjson(first, lines), media_type="application/x-ndjson")

    @app.get("/tasks/{task_id}/inspect", dependencies=guard)
    async def inspect(task_id: TaskId) -> dict[str, Any]:
        return await runtime.inspect(task_id)

    @app.post("/tasks/{task_id}/kill", dependencies=guard, status_code=204)
    async def kill(
        task_id: TaskId, signal: Annotated[str, Query(pattern=SIGNAL_NAME)] = "SIGKILL"
    ) -> Response:
        await runtime.kill(task_id, signal=signal)
        return Response(status_code=204)

    @app.post("/tasks/{task_id}/stop", dependencies=guard, status_code=204)
    async def stop(task_id: TaskId, t: Annotated[float, Query(ge=0, le=3600)] = 10) -> Response:
        if await runtime.stop(task_id, grace=t) is None:
            raise UnknownTask(task_id)
        return Response(status_code=204)

    @app.get("/images", dependencies=guard)
    async def images() -> list[dict[str, Any]]:
        return await runtime.images()

    return app


#: How long a log request waits for its first line before answering 200 anyway (a
#: followed task that prints nothing yet); errors come before that, as a status.
FIRST_LINE_WAIT = 1.0


async def _next(lines: AsyncIterator[LogLine]) -> LogLine | None:
    try:
        return await anext(lines)
    except StopAsyncIteration:
        return None


async def _first(lines: AsyncIterator[LogLine]) -> asyncio.Task[LogLine | None]:
    """The first line, being read; raised now if reading it failed at once."""
    first = asyncio.ensure_future(_next(lines))
    await asyncio.wait({first}, timeout=FIRST_LINE_WAIT)
    if first.done():
        first.result()
    return first


async def _ndjson(
    first: asyncio.Task[LogLine | None], rest: AsyncIterator[LogLine]
) -> AsyncIterator[bytes]:
    try:
        line = await first
        if line is None:
            return
        yield _encode(line)
        async for line in rest:
            yield _encode(line)
    finally:
        first.cancel()
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()


def _encode(line: LogLine) -> bytes:
    item = {"stream": line.stream, "line": line.line, "time": line.time}
    return (json.dumps(item) + "\n").encode()
