"""`/stacks`: deploy a compose document (or converted specs), list, services, tasks, remove.

A stack is the services whose spec names it (`stack`), named `<stack>_<service>`. A
deploy is written whole or not at all, in one transaction, and refused with a 422
before anything is written when it does not fit the store's transaction limit (see
`controlplane.api.control.stacks`). Answers come once this manager's mirror has seen
the write.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path, Response

from controlplane.api.control import stacks as control
from controlplane.api.control.errors import Invalid
from controlplane.api.deps import Authorized, ContextDep
from controlplane.api.routes.tasks import encode_tasks
from controlplane.api.schemas.common import ERRORS
from controlplane.api.schemas.services import ServiceView
from controlplane.api.schemas.stacks import (
    STACK_NAME_PATTERN,
    StackDeploy,
    StackDeployed,
    StackRemoved,
    StackView,
)
from controlplane.api.schemas.tasks import TaskView
from controlplane.models import ServiceSpec

router = APIRouter(prefix="/stacks", tags=["stacks"], dependencies=[Authorized], responses=ERRORS)

StackName = Annotated[str, Path(pattern=STACK_NAME_PATTERN, description="The stack's name")]
#: Where a compose document sent to the manager "lives": nowhere, so `env_file` fails.
NO_WORKDIR = FilePath("/nonexistent/shoal-stack")


def _convert(body: StackDeploy) -> tuple[list[ServiceSpec], list[str]]:
    if body.services is not None:
        return body.services, []
    from controlplane.compose import ComposeError, ComposeFile, load_stack

    assert body.compose is not None
    try:
        loaded = load_stack(
            [ComposeFile(name="compose", text=body.compose)],
            name=body.name,
            environ=body.environment,
            workdir=NO_WORKDIR,
        )
    except ComposeError as exc:
        raise Invalid(("body", "compose"), "; ".join(str(p) for p in exc.problems)) from None
    return loaded.services, [str(warning) for warning in loaded.warnings]


@router.post(
    "",
    response_model=StackDeployed,
    summary="Deploy a stack: create, update and (with prune) remove its services at once",
    responses={
        422: {
            "description": "A bad document or spec, or a stack too large for one "
            "transaction of this store; nothing was written"
        }
    },
)
async def deploy_stack(context: ContextDep, body: StackDeploy) -> StackDeployed:
    specs, warnings = _convert(body)
    deployed = await control.deploy_stack(
        context.store, body.name, specs, prune=body.prune, now=context.clock()
    )
    await context.settle(deployed.revision)
    return StackDeployed.of(body.name, deployed, warnings=warnings)


@router.get("", response_model=list[StackView], summary="Every stack, with its service count")
async def list_stacks(context: ContextDep) -> list[StackView]:
    return [StackView.of(summary) for summary in control.list_stacks(context.view)]


@router.get("/{name}/services", response_model=list[ServiceView], summary="The services of a stack")
async def stack_services(context: ContextDep, name: StackName) -> list[ServiceView]:
    return [ServiceView.of(state) for state in control.stack_services(context.view, name)]


@router.get("/{name}/tasks", response_model=list[TaskView], summary="The tasks of a stack")
async def stack_tasks(context: ContextDep, name: StackName) -> Response:
    return encode_tasks(control.stack_tasks(context.view, name))


@router.delete(
    "/{name}",
    response_model=StackRemoved,
    summary="Remove every service of a stack; the leader then stops their tasks",
)
async def remove_stack(context: ContextDep, name: StackName) -> StackRemoved:
    removed, revision = await control.remove_stack(context.store, name)
    await context.settle(revision)
    return StackRemoved(name=name, removed=removed)
