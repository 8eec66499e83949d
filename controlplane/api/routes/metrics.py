"""`/metrics`: Prometheus text exposition of this manager's registry."""

from __future__ import annotations

from fastapi import APIRouter, Response

from controlplane.api.deps import Authorized, ContextDep
from controlplane.api.metrics import CONTENT_TYPE

router = APIRouter(prefix="/metrics", tags=["metrics"], dependencies=[Authorized])


@router.get(
    "",
    response_class=Response,
    summary="Prometheus metrics: nodes by status, tasks by state, reconcile passes, leader changes",
    responses={200: {"content": {CONTENT_TYPE: {}}}},
)
async def metrics(context: ContextDep) -> Response:
    return Response(content=context.metrics.render(), media_type=CONTENT_TYPE)
