"""Typed dependencies: what a handler's signature asks for, read as documentation.

`ContextDep` is the manager's `ApiContext`; `Authorized` guards a router or a route
with the cluster's API token (`Authorization: Bearer SHOAL-1-...`), compared in
constant time against the hash in the cluster record.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from controlplane.api.context import ApiContext
from controlplane.api.control.cluster import load_cluster
from controlplane.api.control.errors import Unauthorized
from controlplane.models import ClusterRecord
from controlplane.security import tokens


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="api-token",
    description="The API token printed by `swarm init` (SHOAL-1-...)",
)
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def cluster_record(context: ApiContext) -> ClusterRecord | None:
    """The cluster record from the mirror, or from the store while the mirror catches up."""
    return context.view.cluster or await load_cluster(context.store)


def check_api_token(
    record: ClusterRecord | None, credentials: HTTPAuthorizationCredentials | None
) -> None:
    if record is None:
        raise Unauthorized("the cluster is not initialised yet: POST /swarm/init first")
    if credentials is None:
        raise Unauthorized("this call needs the API token: send Authorization: Bearer <token>")
    if not tokens.api_token_valid(record, credentials.credentials):
        raise Unauthorized("the API token is not valid for this cluster")


async def require_api_token(context: ContextDep, credentials: CredentialsDep) -> None:
    check_api_token(await cluster_record(context), credentials)


Authorized = Depends(require_api_token)
