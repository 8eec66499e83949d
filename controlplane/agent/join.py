"""Joining a cluster: the one time an agent talks to a manager.

`POST {manager}/swarm/join` with the join token returns the node's id, the cluster id and
the discovery URL; the manager writes the node's spec. From then on the agent talks only
to the store, and a restarted agent reads all of this from its state directory instead
of asking again (see `identity`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import BaseModel, ValidationError

from controlplane.agent.identity import Identity, load_identity, node_file, save_identity
from controlplane.tls import TlsError, client_context, client_files_from_env, describe_failure

log = logging.getLogger(__name__)


class JoinError(Exception):
    """The manager refused the join or could not be asked; the message says which."""


class JoinGrant(BaseModel):
    """The manager's answer to a valid join."""

    node_id: str
    cluster_id: str
    discovery: str
    role: str = "worker"


@dataclass(frozen=True, slots=True)
class JoinRequest:
    token: str
    node_id: str | None  # None on a first join
    hostname: str
    addr: str
    labels: Mapping[str, str] = field(default_factory=dict)  # written with a new spec


def manager_url(manager: str) -> str:
    """`10.0.0.1:2377` or `http://10.0.0.1:2377/` -> `http://10.0.0.1:2377`."""
    text = manager.strip().rstrip("/")
    if not text:
        raise JoinError("no manager given to join through: pass --join HOST:PORT")
    if "://" not in text:
        text = f"http://{text}"
    return text


async def joined_identity(
    state_dir: Path,
    *,
    manager: str,
    token: str,
    hostname: str,
    addr: str,
    labels: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,  # None except in tests
) -> Identity:
    """The identity saved in `state_dir`, joining through `manager` first if there is none.

    `labels` (the operator's `--label`s) travel with the join: the manager writes the
    new node's spec with them, in one write. A node that joins again keeps the labels
    its spec has.
    """
    saved = await asyncio.to_thread(load_identity, state_dir)
    if saved is not None and saved.discovery:
        log.info(
            "already joined as node %s (%s); not asking the manager again",
            saved.node_id,
            node_file(state_dir),
        )
        return saved
    request = JoinRequest(
        token=token,
        node_id=saved.node_id if saved else None,
        hostname=hostname,
        addr=addr,
        labels=dict(labels or {}),
    )
    grant = await join_cluster(manager, request, transport=transport)
    identity = Identity(
        node_id=grant.node_id, cluster_id=grant.cluster_id, discovery=grant.discovery
    )
    await asyncio.to_thread(save_identity, state_dir, identity)
    log.info("joined cluster %s as node %s (%s)", grant.cluster_id, grant.node_id, grant.role)
    return identity


async def join_cluster(
    manager: str,
    request: JoinRequest,
    *,
    http_timeout: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,  # None except in tests
) -> JoinGrant:
    """Ask `manager` to admit this node; raises `JoinError` with a one-line reason."""
    base = manager_url(manager)
    body: dict[str, object] = {
        "token": request.token,
        "node_id": request.node_id,
        "hostname": request.hostname,
        "addr": request.addr,
    }
    if request.labels:  # only then: a manager older than labels-on-join refuses the field
        body["labels"] = dict(request.labels)
    try:
        verify = client_context(client_files_from_env()) if base.startswith("https://") else True
    except TlsError as exc:
        raise JoinError(str(exc)) from None
    try:
        async with httpx.AsyncClient(
            timeout=http_timeout, transport=transport, verify=verify
        ) as client:
            response = await client.post(f"{base}/swarm/join", json=body)
    except httpx.HTTPError as exc:
        reason = describe_failure(exc) or str(exc) or type(exc).__name__
        raise JoinError(f"cannot reach the manager at {base}: {reason}") from None
    if response.status_code == 200:
        try:
            return JoinGrant.model_validate_json(response.content)
        except ValidationError:
            raise JoinError(
                f"the manager at {base} answered the join with an unexpected body: "
                f"{response.text[:200]!r}"
            ) from None
    detail = _detail(response)
    if response.status_code == 401:
        raise JoinError(f"the manager at {base} refused the join token: {detail}")
    raise JoinError(f"the manager at {base} refused the join ({response.status_code}): {detail}")


def _detail(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        return str(payload["detail"])
    return response.text[:200]
