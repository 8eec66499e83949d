"""`/swarm`: initialise the cluster, admit nodes, rotate join tokens, and summarise.

`POST /swarm/init` needs no token while the cluster is uninitialised (there is none
yet); afterwards it needs the API token like everything else, and answers 409.
`POST /swarm/join` is authenticated by the join token in its body instead.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, status

from controlplane.api.control import cluster as control
from controlplane.api.control.errors import Unauthorized
from controlplane.api.control.swarm import summarise
from controlplane.api.deps import Authorized, ContextDep, CredentialsDep, check_api_token
from controlplane.api.schemas.common import ERRORS
from controlplane.api.schemas.swarm import (
    InitRequest,
    InitResponse,
    JoinRequest,
    JoinResponse,
    JoinTokens,
    LeaderInfo,
    ManagerInfo,
    RotateRequest,
    RotateResponse,
    SwarmInfo,
)

router = APIRouter(prefix="/swarm", tags=["swarm"], responses=ERRORS)


@router.post(
    "/init",
    status_code=status.HTTP_201_CREATED,
    response_model=InitResponse,
    summary="Create the cluster; returns its tokens, shown this once",
)
async def init(
    context: ContextDep,
    credentials: CredentialsDep,
    body: Annotated[InitRequest | None, Body()] = None,
) -> InitResponse:
    existing = await control.load_cluster(context.store)
    if existing is not None:
        try:
            check_api_token(existing, credentials)
        except Unauthorized as exc:
            raise Unauthorized(f"the cluster is already initialised; {exc}") from None
    result = await control.init_cluster(
        context.store, now=context.clock(), settings=body.settings if body else None
    )
    await context.settle(result.revision)
    return InitResponse(
        cluster_id=result.record.id,
        join_tokens=JoinTokens(worker=result.tokens.worker, manager=result.tokens.manager),
        api_token=result.tokens.api,
    )


@router.post("/join", response_model=JoinResponse, summary="Admit a node that shows a join token")
async def join(context: ContextDep, body: JoinRequest) -> JoinResponse:
    admitted = await control.join_node(
        context.store,
        token=body.token,
        node_id=body.node_id,
        now=context.clock(),
        labels=body.labels,
    )
    await context.settle(admitted.revision)
    return JoinResponse(
        node_id=admitted.node_id,
        cluster_id=admitted.cluster_id,
        discovery=context.discovery_url,
        role=admitted.role,
    )


@router.post(
    "/join-token/rotate",
    response_model=RotateResponse,
    dependencies=[Authorized],
    summary="Replace a join token; the old one stops working at once",
)
async def rotate(context: ContextDep, body: RotateRequest) -> RotateResponse:
    token, revision = await control.rotate_join_token(context.store, role=body.role)
    await context.settle(revision)
    return RotateResponse(role=body.role, token=token)


@router.get(
    "", response_model=SwarmInfo, dependencies=[Authorized], summary="The cluster at a glance"
)
async def info(context: ContextDep) -> SwarmInfo:
    """Each other manager's `reachability` is whether its API answered this manager's
    probe of `/health` in the last few seconds (`controlplane.api.reachability`)."""
    summary = summarise(context.view)
    leader = summary.leader
    reachable = await context.reachability.check(
        ((m.id, m.api_url) for m in summary.managers), me=context.manager_id
    )
    return SwarmInfo(
        cluster_id=summary.cluster.id if summary.cluster else None,
        created=summary.cluster.created if summary.cluster else None,
        leader=(
            LeaderInfo(
                manager_id=leader.manager_id,
                api_url=leader.api_url,
                term_started=leader.term_started,
                term=summary.leader_term,
            )
            if leader
            else None
        ),
        managers=[
            ManagerInfo(
                id=m.id,
                api_url=m.api_url,
                started=m.started,
                shoal_version=m.shoal_version,
                leader=leader is not None and leader.manager_id == m.id,
                reachability="reachable" if reachable.get(m.id, True) else "unreachable",
            )
            for m in summary.managers
        ],
        nodes=summary.nodes_by_status,
        tasks=summary.tasks_by_state,
        services=summary.services,
    )
