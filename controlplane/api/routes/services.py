"""`/services`: create, list, inspect, update, scale, roll back and remove services.

Any manager takes these calls and writes `services/<name>` itself; the leader's
reconciler turns the change into tasks. Answers are given once this manager's mirror
has seen the write, so a following read through it shows the change.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from controlplane.api.control import services as control
from controlplane.api.deps import Authorized, ContextDep
from controlplane.api.schemas.common import ERRORS
from controlplane.api.schemas.services import Created, ScaleRequest, ServiceView
from controlplane.models import ServiceSpec
from controlplane.models.service import ServiceRecord

router = APIRouter(
    prefix="/services", tags=["services"], dependencies=[Authorized], responses=ERRORS
)

ServiceRef = Annotated[str, Path(min_length=1, max_length=256, description="name, id or id prefix")]


async def _answer(context: ContextDep, record: ServiceRecord, revision: int) -> ServiceView:
    await context.settle(revision)
    return ServiceView.of(control.service_state(context.view, record))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Created,
    summary="Create a service (409 if the name is taken)",
)
async def create_service(context: ContextDep, spec: ServiceSpec, response: Response) -> Created:
    record, revision = await control.create_service(context.store, spec, now=context.clock())
    await context.settle(revision)
    response.headers["Location"] = f"/services/{spec.name}"
    return Created(id=record.id, name=spec.name, spec_version=record.spec_version)


@router.get("", response_model=list[ServiceView], summary="Every service with its task counts")
async def list_services(
    context: ContextDep,
    stack: Annotated[str | None, Query(description="Only the services of this stack")] = None,
) -> list[ServiceView]:
    return [ServiceView.of(state) for state in control.list_services(context.view, stack=stack)]


@router.get("/{ref}", response_model=ServiceView, summary="One service")
async def inspect_service(context: ContextDep, ref: ServiceRef) -> ServiceView:
    record = control.find_service(context.view, ref)
    return ServiceView.of(control.service_state(context.view, record))


@router.post(
    "/{ref}/update",
    response_model=ServiceView,
    summary="Replace the spec: a new version; the previous one is kept for rollback",
)
async def update_service(
    context: ContextDep,
    ref: ServiceRef,
    spec: ServiceSpec,
    version: Annotated[
        int | None,
        Query(ge=1, description="Refuse (409) unless the service is at this spec version"),
    ] = None,
) -> ServiceView:
    record, revision = await control.update_service(
        context.store, context.view, ref, spec, expected_version=version, now=context.clock()
    )
    return await _answer(context, record, revision)


@router.post(
    "/{ref}/scale", response_model=ServiceView, summary="Set a replicated service's replicas"
)
async def scale_service(context: ContextDep, ref: ServiceRef, body: ScaleRequest) -> ServiceView:
    record, revision = await control.scale_service(
        context.store, context.view, ref, replicas=body.replicas, now=context.clock()
    )
    return await _answer(context, record, revision)


@router.post("/{ref}/rollback", response_model=ServiceView, summary="Go back to the previous spec")
async def rollback_service(context: ContextDep, ref: ServiceRef) -> ServiceView:
    record, revision = await control.rollback_service(
        context.store, context.view, ref, now=context.clock()
    )
    return await _answer(context, record, revision)


@router.delete(
    "/{ref}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Remove a service; the leader then shuts down and removes its tasks",
)
async def remove_service(context: ContextDep, ref: ServiceRef) -> Response:
    revision = await control.remove_service(context.store, context.view, ref)
    await context.settle(revision)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
