"""`/tasks/{id}/logs` and `/services/{name}/logs`: what tasks wrote, as NDJSON.

Each line of the answer is one JSON object (see `control.logs`): a line a task wrote,
or an error object for a task whose node could not be asked. `follow` keeps the answer
open and sends new lines as the tasks write them, until the client goes away.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from controlplane.api.control import logs as control
from controlplane.api.control.services import find_service
from controlplane.api.control.tasks import find_task
from controlplane.api.deps import Authorized, ContextDep
from controlplane.api.schemas.common import ERRORS
from controlplane.models import Task

router = APIRouter(tags=["logs"], dependencies=[Authorized], responses=ERRORS)

NDJSON = "application/x-ndjson"
Tail = Annotated[str, Query(max_length=12, description="How many lines from the end, or 'all'")]
Timestamps = Annotated[bool, Query(description="Give each line its time (RFC 3339)")]
Follow = Annotated[bool, Query(description="Keep streaming new lines")]
LOG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {NDJSON: {}},
        "description": "One JSON object per line: a log line, or an error for a task "
        "whose node could not be reached",
    }
}


async def _encoded(items: AsyncIterator[control.LogItem]) -> AsyncIterator[bytes]:
    async for item in items:
        yield (json.dumps(item) + "\n").encode()


def _query(tail: str, timestamps: bool, follow: bool) -> control.LogQuery:
    return control.LogQuery(tail=control.parse_tail(tail), timestamps=timestamps, follow=follow)


@router.get(
    "/tasks/{ref}/logs",
    response_class=StreamingResponse,
    responses=LOG_RESPONSE,
    summary="One task's output, from its node",
)
async def task_logs(
    context: ContextDep,
    ref: Annotated[str, Path(min_length=1, max_length=256, description="task id or prefix")],
    tail: Tail = "all",
    timestamps: Timestamps = False,
    follow: Follow = False,
) -> StreamingResponse:
    query = _query(tail, timestamps, follow)
    task = find_task(context.view, ref).task
    lines = control.many_task_lines(context.view, control.tasks_with_output([task]), query)
    return StreamingResponse(_encoded(lines), media_type=NDJSON)


@router.get(
    "/services/{ref}/logs",
    response_class=StreamingResponse,
    responses=LOG_RESPONSE,
    summary="The output of every task of a service, from their nodes",
)
async def service_logs(
    context: ContextDep,
    ref: Annotated[str, Path(min_length=1, max_length=256, description="name, id or prefix")],
    tail: Tail = "all",
    timestamps: Timestamps = False,
    follow: Follow = False,
) -> StreamingResponse:
    query = _query(tail, timestamps, follow)
    name = find_service(context.view, ref).spec.name

    def tasks() -> list[Task]:  # the view's per-service index, not a walk of every task
        return context.view.tasks_of(name)

    lines = control.many_task_lines(
        context.view,
        control.tasks_with_output(tasks()),
        query,
        more=tasks,  # following a service follows its new tasks too
        until=context.closing,
    )
    return StreamingResponse(_encoded(lines), media_type=NDJSON)
