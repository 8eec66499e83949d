"""Cluster-wide records: the cluster itself, the leader, and each manager."""

from __future__ import annotations

from pydantic import Field

from controlplane.models.base import Document


class ClusterRecord(Document):
    """`cluster`: written once by `swarm init`. Tokens are kept only as hashes."""

    id: str
    created: float
    worker_token_hash: str
    manager_token_hash: str
    api_token_hash: str
    settings: dict[str, str | int | float | bool] = Field(default_factory=dict)


class LeaderRecord(Document):
    """`leader`: held on the leader lease; its store revision is the fencing token."""

    manager_id: str
    api_url: str
    term_started: float


class ManagerRecord(Document):
    """`managers/<id>`: one per running manager, on that manager's lease."""

    id: str
    api_url: str
    started: float
    shoal_version: str
