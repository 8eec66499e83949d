"""`/tasks`: what runs where, filtered by service, node, desired state or state.

The list may be read a page at a time (`limit`, then `after` set to the
`Shoal-Next-Cursor` header of the previous page); without `limit` it is the whole list,
as before. Either way the body is a JSON array of tasks, encoded from a per-task cache
(`TaskListEncoder`). The sorted list of a service's tasks (or of all tasks) is kept
between calls while the mirror says nothing in it changed (`control.task_lists`), and
its whole answer with it: ten thousand tasks of one service cost a lookup per call, not
a walk, a sort and a join. The body is sent as it is (a `Response`, never validated
again); `response_model` only documents it.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Response

from controlplane.api.control import tasks as control
from controlplane.api.control.errors import NotFound
from controlplane.api.control.nodes import find_node
from controlplane.api.control.services import find_service
from controlplane.api.control.task_lists import select
from controlplane.api.deps import Authorized, ContextDep
from controlplane.api.schemas.common import ERRORS
from controlplane.api.schemas.tasks import TaskListEncoder, TaskView
from controlplane.models import TaskState
from controlplane.models.task import DesiredState

router = APIRouter(prefix="/tasks", tags=["tasks"], dependencies=[Authorized], responses=ERRORS)

NEXT_CURSOR = "Shoal-Next-Cursor"
MAX_PAGE = 10_000

_encoder = TaskListEncoder()


def encode_tasks(found: list[control.ObservedTask]) -> Response:
    """A JSON array of tasks, from the per-task cache (the module docstring)."""
    return Response(content=_encoder.encode(found), media_type="application/json")


_PAGED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The tasks, sorted by service, slot, creation time and id",
        "headers": {
            NEXT_CURSOR: {
                "description": "Present when more tasks follow this page: pass it as "
                "`after` to read the next one",
                "schema": {"type": "string"},
            },
            "Link": {
                "description": 'The next page\'s URL, as `<...>; rel="next"` (RFC 8288)',
                "schema": {"type": "string"},
            },
        },
    }
}


@router.get(
    "",
    response_model=list[TaskView],
    summary="Tasks, optionally filtered, whole or a page at a time",
    responses=_PAGED,
)
async def list_tasks(
    context: ContextDep,
    service: Annotated[str | None, Query(description="service name, id or id prefix")] = None,
    node: Annotated[str | None, Query(description="node id, id prefix or hostname")] = None,
    desired_state: DesiredState | None = None,
    state: TaskState | None = None,
    limit: Annotated[
        int | None,
        Query(ge=1, le=MAX_PAGE, description="At most this many tasks (default: all of them)"),
    ] = None,
    after: Annotated[
        str | None,
        Query(max_length=2048, description="The previous page's `Shoal-Next-Cursor` header"),
    ] = None,
) -> Response:
    view = context.view
    filters: dict[str, str] = {}
    if service is not None:
        filters["service"] = service
        with contextlib.suppress(NotFound):  # no such service: the filter matches nothing
            service = find_service(view, service).spec.name
    if node is not None:
        filters["node"] = node
        with contextlib.suppress(NotFound):
            node = find_node(view, node).id
    query = control.TaskFilter(service=service, node=node, desired_state=desired_state, state=state)
    kept = context.task_lists.get(view, service)
    if kept is None:  # a service filter the index does not know (perhaps an id): walk
        found, cursor = control.page(control.list_tasks(view, query), limit=limit, after=after)
    elif node is None and desired_state is None and state is None and limit is None:
        if after is None:
            return Response(content=_encoder.encode_list(kept), media_type="application/json")
        found, cursor = select(kept, query, limit=limit, after=after)
    else:
        found, cursor = select(kept, query, limit=limit, after=after)
    response = encode_tasks(found)
    if cursor is not None:
        if desired_state is not None:
            filters["desired_state"] = desired_state.value
        if state is not None:
            filters["state"] = state.value
        params = urlencode({**filters, "limit": str(limit), "after": cursor})
        response.headers[NEXT_CURSOR] = cursor
        response.headers["Link"] = f'</tasks?{params}>; rel="next"'
    return response


@router.get("/{ref}", response_model=TaskView, summary="One task")
async def inspect_task(
    context: ContextDep, ref: Annotated[str, Path(min_length=1, max_length=256)]
) -> TaskView:
    return TaskView.of(control.find_task(context.view, ref))
