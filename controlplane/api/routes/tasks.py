"""`/tasks`: what runs where, filtered by service, node, desired state or state."""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Path, Query

from controlplane.api.control import tasks as control
from controlplane.api.control.errors import NotFound
from controlplane.api.control.nodes import find_node
from controlplane.api.control.services import find_service
from controlplane.api.deps import Authorized, ContextDep
from controlplane.api.schemas.common import ERRORS
from controlplane.api.schemas.tasks import TaskView
from controlplane.models import TaskState
from controlplane.models.task import DesiredState

router = APIRouter(prefix="/tasks", tags=["tasks"], dependencies=[Authorized], responses=ERRORS)


@router.get("", response_model=list[TaskView], summary="Tasks, optionally filtered")
async def list_tasks(
    context: ContextDep,
    service: Annotated[str | None, Query(description="service name, id or id prefix")] = None,
    node: Annotated[str | None, Query(description="node id, id prefix or hostname")] = None,
    desired_state: DesiredState | None = None,
    state: TaskState | None = None,
) -> list[TaskView]:
    view = context.view
    if service is not None:
        with contextlib.suppress(NotFound):  # no such service: the filter matches nothing
            service = find_service(view, service).spec.name
    if node is not None:
        with contextlib.suppress(NotFound):
            node = find_node(view, node).id
    query = control.TaskFilter(service=service, node=node, desired_state=desired_state, state=state)
    return [TaskView.of(item) for item in control.list_tasks(view, query)]


@router.get("/{ref}", response_model=TaskView, summary="One task")
async def inspect_task(
    context: ContextDep, ref: Annotated[str, Path(min_length=1, max_length=256)]
) -> TaskView:
    return TaskView.of(control.find_task(context.view, ref))
