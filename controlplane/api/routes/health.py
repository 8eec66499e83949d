"""`/health`: is this manager serving, and does it lead. Needs no token."""

from __future__ import annotations

from fastapi import APIRouter

from controlplane.api.deps import ContextDep
from controlplane.api.schemas.health import Health
from controlplane.version import __version__

router = APIRouter(prefix="/health", tags=["health"])


@router.get("", response_model=Health, summary="This manager's liveness and role")
async def health(context: ContextDep) -> Health:
    return Health(
        manager_id=context.manager_id,
        leader=context.is_leader(),
        initialised=context.view.cluster is not None,
        version=__version__,
    )
