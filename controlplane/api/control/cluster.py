"""The cluster's own lifecycle: init, join, and rotating join tokens.

These read the `cluster` record from the store, not from the mirror: a token check must
see a rotation the moment it is written, and init must not race a mirror that has not
caught up. Each is one transaction, so a refused call writes nothing and two managers
racing on init (or on one node's join) end with exactly one winner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controlplane import keys
from controlplane.api.control import writes
from controlplane.api.control.errors import Conflict, Invalid, Unauthorized
from controlplane.api.control.ids import NODE_ID, new_id
from controlplane.models import ClusterRecord, NodeRole, NodeSpec
from controlplane.security import tokens
from discovery import Store

SettingValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Initialised:
    record: ClusterRecord
    tokens: tokens.IssuedTokens
    revision: int


@dataclass(frozen=True, slots=True)
class Admitted:
    node_id: str
    cluster_id: str
    role: NodeRole
    revision: int  # store revision after the join (0: the spec already existed)


async def load_cluster(store: Store) -> ClusterRecord | None:
    kv = await store.get(keys.CLUSTER)
    return None if kv is None else ClusterRecord.load(kv.value)


async def init_cluster(
    store: Store, *, now: float, settings: dict[str, SettingValue] | None = None
) -> Initialised:
    """Create the cluster record (create-only); `Conflict` when it already exists."""
    cluster_id = new_id()
    issued = tokens.issue_tokens(cluster_id)
    record = ClusterRecord(
        id=cluster_id,
        created=now,
        worker_token_hash=tokens.hash_token(issued.worker),
        manager_token_hash=tokens.hash_token(issued.manager),
        api_token_hash=tokens.hash_token(issued.api),
        settings=dict(settings or {}),
    )
    revision = await writes.create(store, keys.CLUSTER, record)
    if revision is None:
        existing = await load_cluster(store)
        which = f" (cluster id {existing.id})" if existing is not None else ""
        raise Conflict(f"the cluster is already initialised{which}")
    return Initialised(record=record, tokens=issued, revision=revision)


async def join_node(
    store: Store,
    *,
    token: str,
    node_id: str | None,
    now: float,
    labels: Mapping[str, str] | None = None,
) -> Admitted:
    """Admit a node that shows a valid join token; write its spec if it has none.

    The spec is written with the node's `labels`, in the same create-only write, so a
    new node is never seen without them. A node that joins again (same id) keeps the
    spec it has: its role, availability and labels are the operator's, not the token's
    or the agent's. A refused join writes nothing.
    """
    record = await load_cluster(store)
    if record is None:
        raise Conflict("the cluster is not initialised yet: run `shoal swarm init` first")
    role = tokens.join_role(record, token)
    if role is None:
        raise Unauthorized(_why_refused(token, record.id))
    if node_id is not None and not NODE_ID.match(node_id):
        raise Invalid(
            ("body", "node_id"),
            "a node id is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    chosen = node_id or new_id()
    spec = NodeSpec(id=chosen, role=role, joined=now, labels=dict(labels or {}))
    revision = await writes.create(store, keys.node_spec(chosen), spec)
    if revision is None:
        kv = await store.get(keys.node_spec(chosen))
        if kv is not None:
            role = NodeSpec.load(kv.value).role
        revision = 0
    return Admitted(node_id=chosen, cluster_id=record.id, role=role, revision=revision)


HASH_FIELDS = {
    tokens.TokenKind.WORKER: "worker_token_hash",
    tokens.TokenKind.MANAGER: "manager_token_hash",
    tokens.TokenKind.API: "api_token_hash",
}


async def rotate_token(store: Store, *, kind: tokens.TokenKind) -> tuple[str, int]:
    """A new token of `kind`; the old one stops working at once.

    The API offers this for join tokens. Rotating the API token is for whoever can write
    the store directly (`shoal up` on its own machine, when the saved token is lost):
    writing the store is owning the cluster anyway.
    """
    holder: list[str] = []

    def change(record: ClusterRecord) -> ClusterRecord:
        fresh = tokens.new_token(record.id)
        holder[:] = [fresh]
        return record.model_copy(update={HASH_FIELDS[kind]: tokens.hash_token(fresh)})

    _, revision = await writes.modify(
        store, keys.CLUSTER, model=ClusterRecord, change=change, kind="cluster", ref="cluster"
    )
    return holder[0], revision


async def rotate_join_token(store: Store, *, role: NodeRole) -> tuple[str, int]:
    """A new join token for `role`; the old one stops working at once."""
    kind = tokens.TokenKind.MANAGER if role is NodeRole.MANAGER else tokens.TokenKind.WORKER
    return await rotate_token(store, kind=kind)


def _why_refused(token: str, cluster_id: str) -> str:
    if not tokens.well_formed(token):
        return "that is not a shoal join token (they read SHOAL-1-...)"
    if not tokens.for_cluster(token, cluster_id):
        return "that join token belongs to another cluster"
    return "the join token is not valid (it may have been rotated)"
