"""Cluster tokens: their format, how they are minted, hashed and checked.

Format: `SHOAL-1-<cluster fragment>-<secret>`, after docker's `SWMTKN-1-...`. The prefix
makes a leaked token easy to recognise (secret scanners, logs); the `1` is the format
version, so a later format can be told apart; the fragment (the first characters of the
cluster id) lets a node see at once that a token belongs to another cluster; the
secret is 200 random bits in lowercase base32 (no `-`, so the token splits cleanly).

Only SHA-256 hashes are stored. A slow password hash (bcrypt, scrypt, argon2) exists to
make guessing a *low-entropy* human password expensive; these secrets are 200 random
bits, so a preimage search is hopeless whatever the hash's speed, and a fast hash keeps
the API token check cheap on every request. Hashes are compared with
`hmac.compare_digest`, so the time a check takes says nothing about how close a guess was.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from controlplane.models import ClusterRecord, NodeRole

TOKEN_PREFIX = "SHOAL"
TOKEN_FORMAT_VERSION = "1"
FRAGMENT_LENGTH = 12
SECRET_BYTES = 25  # 200 bits: 40 base32 characters, no padding
HASH_SCHEME = "sha256"


class TokenKind(StrEnum):
    WORKER = "worker"
    MANAGER = "manager"
    API = "api"


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """The three secrets of a new cluster, in clear: shown once, never stored."""

    worker: str
    manager: str
    api: str


def cluster_fragment(cluster_id: str) -> str:
    return cluster_id[:FRAGMENT_LENGTH].lower()


def new_token(cluster_id: str) -> str:
    """A fresh token for the cluster `cluster_id`."""
    secret = base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=").lower()
    return f"{TOKEN_PREFIX}-{TOKEN_FORMAT_VERSION}-{cluster_fragment(cluster_id)}-{secret}"


def issue_tokens(cluster_id: str) -> IssuedTokens:
    return IssuedTokens(
        worker=new_token(cluster_id), manager=new_token(cluster_id), api=new_token(cluster_id)
    )


def hash_token(token: str) -> str:
    """`sha256:<hex>`: what the cluster record keeps instead of the token."""
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{HASH_SCHEME}:{digest}"


def token_matches(token: str, stored_hash: str) -> bool:
    """True when `token` hashes to `stored_hash`, in time independent of the guess."""
    return hmac.compare_digest(hash_token(token).encode(), stored_hash.encode())


def well_formed(token: str) -> bool:
    """True for text shaped like a current-format shoal token (says nothing of validity)."""
    parts = token.split("-")
    return (
        len(parts) == 4
        and parts[0] == TOKEN_PREFIX
        and parts[1] == TOKEN_FORMAT_VERSION
        and len(parts[2]) > 0
        and len(parts[3]) > 0
    )


def for_cluster(token: str, cluster_id: str) -> bool:
    """True when the token's fragment names `cluster_id` (a hint for errors, not a check)."""
    parts = token.split("-")
    return len(parts) == 4 and parts[2] == cluster_fragment(cluster_id)


def join_role(record: ClusterRecord, token: str) -> NodeRole | None:
    """The role a join token grants in this cluster, or None when it grants nothing.

    Both hashes are always compared, so the time taken does not reveal which one (if
    either) came close.
    """
    as_worker = token_matches(token, record.worker_token_hash)
    as_manager = token_matches(token, record.manager_token_hash)
    if as_manager:
        return NodeRole.MANAGER
    if as_worker:
        return NodeRole.WORKER
    return None


def api_token_valid(record: ClusterRecord, token: str) -> bool:
    return token_matches(token, record.api_token_hash)
