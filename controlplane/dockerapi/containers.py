"""`/containers/...`: list, create, start, stop, kill, restart, wait, inspect, logs, remove.

Desired state goes to the store (any manager may write it); what needs the node (stop,
kill, inspect, logs) goes to the node's agent endpoint. A call that changes what runs
answers once this manager sees the change, within `SETTLE_SECONDS`, so that a
`docker ps` right after a `docker stop` no longer shows the container running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from controlplane.agent.api.client import AgentClient, AgentError
from controlplane.api.context import ApiContext
from controlplane.api.control import services as control
from controlplane.api.control.errors import Conflict
from controlplane.api.control.ports import PortTaken
from controlplane.dockerapi import listing, oneoff
from controlplane.dockerapi.errors import DockerError, not_supported
from controlplane.dockerapi.frames import MEDIA_TYPE, frame, log_payload
from controlplane.models import TaskState

router = APIRouter()

#: How long `start` waits for the leader to place and the node to start the container.
START_SECONDS = 60.0
#: How long `stop` and `kill` wait for the node to report the container ended.
SETTLE_SECONDS = 15.0
#: How long a log request waits for its first line before answering anyway.
FIRST_LINE_WAIT = 1.0

Flag = Annotated[bool, Query()]
SIGNAL = re.compile(r"^SIG[A-Z0-9+-]{1,13}$|^[0-9]{1,2}$")


def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


def _client(context: ApiContext, container: listing.DockerContainer) -> AgentClient:
    return AgentClient(context.view.nodes.get(container.node_id), node_id=container.node_id)


async def _until(
    context: ApiContext,
    done: Callable[[], Any],
    *,
    within: float,
) -> Any:
    """`done()` once it is truthy, re-checked at each change of the view; None on time-out."""
    deadline = time.monotonic() + within
    revision = context.view.revision
    while True:
        result = done()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(left, 1.0)):
                revision = await context.view.wait_changed(revision)


# --- list and create ---------------------------------------------------------------------

FILTERS = ("id", "name", "label", "status")


def _filters(text: str | None) -> dict[str, list[str]]:
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        raise DockerError(400, "filters: not valid JSON") from None
    if not isinstance(raw, dict):
        raise DockerError(400, "filters: must be a JSON object")
    parsed: dict[str, list[str]] = {}
    for key, value in raw.items():
        if key not in FILTERS:
            raise DockerError(400, f"filters: the {key!r} filter is not supported by shoal")
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            parsed[key] = list(value)
        elif isinstance(value, dict) and all(isinstance(v, str) for v in value):
            parsed[key] = list(value)  # the older form: {"value": true}
        else:
            raise DockerError(400, f"filters: {key!r} must be a list of strings")
    return parsed


def _matches(container: listing.DockerContainer, filters: dict[str, list[str]]) -> bool:
    labels = listing.labels_of(container)
    for key, values in filters.items():
        if key == "id" and not any(container.id.startswith(v) for v in values):
            return False
        if key == "name" and not any(v.lstrip("/") in container.full_name for v in values):
            return False
        if key == "status" and container.state not in values:
            return False
        if key == "label":
            for value in values:
                name, sep, wanted = value.partition("=")
                if name not in labels or (sep and labels[name] != wanted):
                    return False
    return True


@router.get("/containers/json")
async def list_containers(
    request: Request,
    all: Flag = False,
    limit: int = -1,
    size: Flag = False,
    filters: str | None = None,
) -> list[dict[str, Any]]:
    wanted = _filters(filters)
    found = [
        listing.summary(c)
        for c in listing.containers(_context(request).view)
        if (all or c.running) and _matches(c, wanted)
    ]
    return found[:limit] if limit > 0 else found


@router.post("/containers/create", status_code=201)
async def create_container(request: Request, name: str | None = None) -> dict[str, Any]:
    context = _context(request)
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise DockerError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise DockerError(400, "the request body must be a JSON object")
    spec = oneoff.service_spec(body, name=oneoff.container_name(name))
    try:
        record, revision = await control.create_service(context.store, spec, now=context.clock())
    except PortTaken as err:  # a host port the routing mesh serves for another service
        raise DockerError(409, str(err)) from None
    except Conflict:
        holder = context.view.services.get(spec.name)
        raise DockerError(
            409,
            f'Conflict. The container name "/{spec.name}" is already in use by container '
            f'"{holder.id if holder else spec.name}". You have to remove (or rename) that '
            "container to be able to reuse that name.",
        ) from None
    await context.settle(revision)
    return {"Id": record.id, "Warnings": []}


# --- lifecycle ---------------------------------------------------------------------------


def _one_off(container: listing.DockerContainer, verb: str) -> None:
    if not container.one_off:
        service = container.task.service if container.task else "?"
        raise DockerError(
            409,
            f"{verb} a task of service {service!r} is not supported by shoal: its service "
            f"decides that (shoal service scale/update/rm {service})",
        )


async def _start(context: ApiContext, container: listing.DockerContainer) -> None:
    assert container.service is not None
    name = container.service.spec.name
    before = {t.id for t in context.view.tasks.values() if t.service == name}
    spec = container.service.spec
    spec = (
        spec.model_copy(update={"replicas": 1})
        if container.task is None
        else (oneoff.restarted(spec))
    )
    _, revision = await control.update_service(
        context.store, context.view, name, spec, expected_version=None, now=context.clock()
    )
    await context.settle(revision)

    def outcome() -> tuple[str, str] | None:
        for task in context.view.tasks.values():
            if task.service != name or task.id in before:
                continue
            status = context.view.statuses.get(task.id)
            if status is None:
                return None
            if status.state is TaskState.RUNNING or (
                status.state.terminal and status.started_at is not None
            ):
                return ("started", "")
            if status.state.terminal:
                return ("failed", status.error or status.message or status.state.value)
            if status.state is TaskState.PENDING and status.message:
                return ("pending", status.message)
        return None

    result = await _until(context, outcome, within=START_SECONDS)
    if result is None:
        raise DockerError(
            409,
            f"container {name!r} was not running after {START_SECONDS:g} s; "
            "`docker ps -a` shows where it is",
        )
    if result[0] == "failed":
        raise DockerError(409, f"container {name!r} failed to start: {result[1]}")
    if result[0] == "pending":
        raise DockerError(409, f"container {name!r} waits for a node: {result[1]}")


@router.post("/containers/{ref}/start", status_code=204)
async def start_container(request: Request, ref: str) -> Response:
    context = _context(request)
    container = listing.resolve(context.view, ref)
    _one_off(container, "starting")
    if container.running:
        return Response(status_code=304)
    await _start(context, container)
    return Response(status_code=204)


async def _ended(context: ApiContext, container: listing.DockerContainer) -> None:
    """Wait (bounded) until this manager sees the container's task no longer running."""
    assert container.task is not None
    task_id = container.task.id

    def ended() -> bool:
        status = context.view.statuses.get(task_id)
        return status is None or status.state is not TaskState.RUNNING

    await _until(context, ended, within=SETTLE_SECONDS)


async def _stop(context: ApiContext, container: listing.DockerContainer, t: str | None) -> bool:
    """Stop a running container; False when it was not running."""
    if not container.running or container.task is None:
        return False
    default = container.task.spec.stop_grace_seconds
    await _client(context, container).stop(container.task.id, grace=oneoff.grace(t, default))
    await _ended(context, container)
    return True


@router.post("/containers/{ref}/stop", status_code=204)
async def stop_container(request: Request, ref: str, t: str | None = None) -> Response:
    context = _context(request)
    container = listing.resolve(context.view, ref)
    stopped = await _stop(context, container, t)
    return Response(status_code=204 if stopped else 304)


@router.post("/containers/{ref}/kill", status_code=204)
async def kill_container(request: Request, ref: str, signal: str = "SIGKILL") -> Response:
    context = _context(request)
    container = listing.resolve(context.view, ref)
    if not container.running or container.task is None:
        raise DockerError(409, f"Container {ref} is not running")
    name = signal if signal.startswith("SIG") or signal.isdigit() else f"SIG{signal}"
    if not SIGNAL.match(name.upper()):
        raise DockerError(400, f"signal: {signal!r} is not a signal name or number")
    await _client(context, container).kill(container.task.id, signal=name.upper())
    if name.upper() in ("SIGKILL", "9"):
        await _ended(context, container)
    return Response(status_code=204)


@router.post("/containers/{ref}/restart", status_code=204)
async def restart_container(request: Request, ref: str, t: str | None = None) -> Response:
    context = _context(request)
    container = listing.resolve(context.view, ref)
    _one_off(container, "restarting")
    await _stop(context, container, t)
    await _start(context, listing.resolve(context.view, container.id))
    return Response(status_code=204)


@router.post("/containers/{ref}/wait")
async def wait_container(
    request: Request, ref: str, condition: str = "not-running"
) -> StreamingResponse:
    """The Engine sends the headers at once and the body when the container exits: the
    CLI's `run` asks for this before it starts the container, and waits for headers."""
    context = _context(request)
    container = listing.resolve(context.view, ref)
    if condition not in ("not-running", "next-exit", "removed"):
        raise DockerError(400, f"condition: {condition!r} is not not-running, next-exit or removed")
    if condition == "removed":
        raise not_supported("waiting for removal")
    first = container.task.id if container.task is not None else None

    def exited() -> listing.DockerContainer | None:
        try:
            now = listing.resolve(context.view, container.id)
        except DockerError:
            return container  # removed meanwhile: it is not running
        if now.state != "exited":
            return None
        if condition == "next-exit" and now.task is not None and now.task.id == first:
            return now if container.state != "exited" else None
        return now

    async def body() -> AsyncIterator[bytes]:
        ended: listing.DockerContainer | None = None
        while ended is None and not context.closing.is_set():
            ended = await _until(context, exited, within=60.0)
        if ended is None:
            answer = {"StatusCode": -1, "Error": {"Message": "the manager shut down"}}
        else:
            answer = {"StatusCode": ended.exit_code, "Error": None}
        yield json.dumps(answer).encode()

    return StreamingResponse(body(), media_type="application/json")


@router.delete("/containers/{ref}", status_code=204)
async def remove_container(
    request: Request, ref: str, force: Flag = False, v: Flag = False
) -> Response:
    context = _context(request)
    container = listing.resolve(context.view, ref)
    _one_off(container, "removing")
    assert container.service is not None
    if container.running:
        if not force:
            raise DockerError(
                409,
                f"You cannot remove a running container {container.id}. Stop the container "
                "before attempting removal or force remove",
            )
        assert container.task is not None
        with contextlib.suppress(AgentError):  # the leader stops it anyway, more slowly
            await _client(context, container).kill(container.task.id, signal="SIGKILL")
    revision = await control.remove_service(context.store, context.view, container.service.id)
    await context.settle(revision)
    return Response(status_code=204)


# --- inspect and logs --------------------------------------------------------------------


@router.get("/containers/{ref}/json")
async def inspect_container(request: Request, ref: str) -> dict[str, Any]:
    context = _context(request)
    container = listing.resolve(context.view, ref)
    engine: dict[str, Any] | None = None
    if container.task is not None and container.node_id:
        with contextlib.suppress(AgentError):
            engine = await _client(context, container).inspect(container.task.id)
    return listing.inspect_document(container, engine)


def _tail(text: str) -> int | None:
    if text in ("all", ""):
        return None
    try:
        count = int(text)
    except ValueError:
        raise DockerError(400, f"tail: {text!r} is not a number of lines or 'all'") from None
    return None if count < 0 else count


@router.get("/containers/{ref}/logs")
async def container_logs(
    request: Request,
    ref: str,
    stdout: Flag = False,
    stderr: Flag = False,
    follow: Flag = False,
    timestamps: Flag = False,
    tail: str = "all",
    since: str = "0",
    until: str = "0",
) -> StreamingResponse:
    context = _context(request)
    container = listing.resolve(context.view, ref)
    if not (stdout or stderr):
        raise DockerError(400, "You must choose at least one stream")
    if since not in ("", "0") or until not in ("", "0"):
        raise not_supported("logs --since and --until")
    wanted = {name for name, on in (("stdout", stdout), ("stderr", stderr)) if on}
    count = _tail(tail)
    if container.task is None or not container.node_id:
        return StreamingResponse(_nothing(), media_type=MEDIA_TYPE)
    lines = _client(context, container).logs(
        container.task.id, tail=count, timestamps=timestamps, follow=follow
    )
    first = await _first(lines)
    return StreamingResponse(_frames(first, lines, wanted), media_type=MEDIA_TYPE)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing


async def _next(lines: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return await anext(lines)
    except StopAsyncIteration:
        return None


async def _first(
    lines: AsyncIterator[dict[str, Any]],
) -> Awaitable[dict[str, Any] | None]:
    """Start reading; a failure that comes at once (no such container) is raised now."""
    first = asyncio.ensure_future(_next(lines))
    await asyncio.wait({first}, timeout=FIRST_LINE_WAIT)
    if first.done():
        first.result()
    return first


async def _frames(
    first: Awaitable[dict[str, Any] | None],
    rest: AsyncIterator[dict[str, Any]],
    wanted: set[str],
) -> AsyncIterator[bytes]:
    item = await first
    if item is None:
        return
    try:
        while item is not None:
            stream = str(item.get("stream", "stdout"))
            if stream in wanted:
                yield frame(stream, log_payload(str(item.get("line", "")), item.get("time")))
            item = await _next(rest)
    except AgentError:
        return  # the node went away mid-stream: the log ends there
