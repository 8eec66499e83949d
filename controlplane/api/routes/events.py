"""`/events`: a server-sent event stream of node, service and task changes.

Each event is `event: <node|service|task>`, `id: <store revision>`, and a JSON `data`
line with the action (create, update, remove), the object's id and a few attributes.
`types` narrows the stream; `limit` ends it after that many events (for scripts).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from controlplane.api.control.errors import Invalid
from controlplane.api.control.events import EventType, cluster_events
from controlplane.api.deps import Authorized, ContextDep
from controlplane.api.schemas.common import ERRORS

router = APIRouter(prefix="/events", tags=["events"], dependencies=[Authorized], responses=ERRORS)

PING_SECONDS = 15


def _types(text: str | None) -> list[EventType]:
    if text is None or not text.strip():
        return list(EventType)
    chosen = []
    for part in text.split(","):
        try:
            chosen.append(EventType(part.strip()))
        except ValueError:
            known = ", ".join(t.value for t in EventType)
            raise Invalid(
                ("query", "types"), f"unknown event type {part.strip()!r}; use {known}"
            ) from None
    return chosen


@router.get(
    "",
    summary="Stream cluster changes as server-sent events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def events(
    context: ContextDep,
    types: Annotated[str | None, Query(description="Comma list of node, service, task")] = None,
    limit: Annotated[int | None, Query(ge=1, description="Stop after this many events")] = None,
) -> EventSourceResponse:
    wanted = _types(types)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        sent = 0
        async for event in cluster_events(context.view, types=wanted, until=context.closing):
            body = {
                "type": event.type.value,
                "action": event.action.value,
                "id": event.id,
                "revision": event.revision,
                "attributes": event.attributes,
            }
            yield ServerSentEvent(
                data=json.dumps(body), event=event.type.value, id=str(event.revision)
            )
            sent += 1
            if limit is not None and sent >= limit:
                return

    return EventSourceResponse(stream(), ping=PING_SECONDS)
