"""`/nodes`: list, inspect, update (availability, role, labels) and remove nodes."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from controlplane.api.context import ApiContext
from controlplane.api.control import nodes as control
from controlplane.api.deps import Authorized, ContextDep
from controlplane.api.schemas.common import ERRORS
from controlplane.api.schemas.nodes import NodeUpdate, NodeView

router = APIRouter(prefix="/nodes", tags=["nodes"], dependencies=[Authorized], responses=ERRORS)

NodeRef = Annotated[
    str, Path(min_length=1, max_length=256, description="id, unique id prefix or hostname")
]


async def _probed(context: ApiContext, states: list[control.NodeState]) -> list[control.NodeState]:
    """Manager nodes that are registered, but whose API does not answer this manager's
    probe, made `unreachable`: the same answer `/swarm` gives (`api.reachability`)."""
    managers = context.view.managers
    asked = [
        (state.id, managers[state.id].api_url)
        for state in states
        if state.manager_status is control.ManagerStatus.REACHABLE and state.id in managers
    ]
    if not asked:
        return states
    reachable = await context.reachability.check(asked, me=context.manager_id)
    return [
        state
        if reachable.get(state.id, True)
        else replace(state, manager_status=control.ManagerStatus.UNREACHABLE)
        for state in states
    ]


@router.get("", response_model=list[NodeView], summary="Every node, ready or down")
async def list_nodes(context: ContextDep) -> list[NodeView]:
    return [
        NodeView.of(state) for state in await _probed(context, control.list_nodes(context.view))
    ]


@router.get("/{ref}", response_model=NodeView, summary="One node")
async def inspect_node(context: ContextDep, ref: NodeRef) -> NodeView:
    [state] = await _probed(context, [control.find_node(context.view, ref)])
    return NodeView.of(state)


async def _update(context: ContextDep, ref: str, body: NodeUpdate) -> NodeView:
    change = control.NodeChange(
        availability=body.availability,
        role=body.role,
        labels_add=body.labels_add,
        labels_remove=body.labels_remove,
    )
    spec, revision = await control.update_node(context.store, context.view, ref, change)
    await context.settle(revision)
    return NodeView.of(replace(control.find_node(context.view, spec.id), spec=spec))


@router.post("/{ref}/update", response_model=NodeView, summary="Change availability, role, labels")
async def update_node(context: ContextDep, ref: NodeRef, body: NodeUpdate) -> NodeView:
    return await _update(context, ref, body)


@router.patch("/{ref}", response_model=NodeView, summary="Same as POST /nodes/{ref}/update")
async def patch_node(context: ContextDep, ref: NodeRef, body: NodeUpdate) -> NodeView:
    return await _update(context, ref, body)


@router.delete(
    "/{ref}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Forget a down node (409 while it is up, unless force=true)",
)
async def remove_node(
    context: ContextDep,
    ref: NodeRef,
    force: Annotated[bool, Query(description="Remove even while the node is up")] = False,
) -> Response:
    revision = await control.remove_node(context.store, context.view, ref, force=force)
    await context.settle(revision)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
