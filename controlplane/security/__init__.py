"""Who may talk to a cluster: join tokens, the API token, and how they are checked.

A cluster has three secrets, all minted by `swarm init` and shown exactly once: a worker
join token, a manager join token (both used once per node, at `swarm join`), and an API
token (sent as `Authorization: Bearer ...` on every other call). The store keeps only
their hashes, so reading the store never yields a credential. Everything here is pure:
no I/O, so the API layer and the tests share one definition of a valid token.
"""

from controlplane.security.tokens import (
    TOKEN_PREFIX,
    IssuedTokens,
    TokenKind,
    api_token_valid,
    hash_token,
    issue_tokens,
    join_role,
    new_token,
    token_matches,
)

__all__ = [
    "TOKEN_PREFIX",
    "IssuedTokens",
    "TokenKind",
    "api_token_valid",
    "hash_token",
    "issue_tokens",
    "join_role",
    "new_token",
    "token_matches",
]
