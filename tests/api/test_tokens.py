"""Token format and checks (pure: no store, no app)."""

from __future__ import annotations

from controlplane.models import ClusterRecord, NodeRole
from controlplane.security import tokens


def record_with(issued: tokens.IssuedTokens, cluster_id: str) -> ClusterRecord:
    return ClusterRecord(
        id=cluster_id,
        created=0.0,
        worker_token_hash=tokens.hash_token(issued.worker),
        manager_token_hash=tokens.hash_token(issued.manager),
        api_token_hash=tokens.hash_token(issued.api),
    )


def test_tokens_are_prefixed_versioned_and_name_their_cluster() -> None:
    token = tokens.new_token("abcdefghijklmnopqrstuvwxy")
    prefix, version, fragment, secret = token.split("-")
    assert (prefix, version, fragment) == ("SHOAL", "1", "abcdefghijkl")
    assert len(secret) == 40
    assert tokens.well_formed(token)
    assert tokens.for_cluster(token, "abcdefghijklmnopqrstuvwxy")
    assert not tokens.for_cluster(token, "zzzzzzzzzzzzzzzzzzzzzzzzz")


def test_every_token_is_new() -> None:
    assert len({tokens.new_token("c" * 25) for _ in range(200)}) == 200


def test_join_role_tells_worker_from_manager_and_refuses_the_rest() -> None:
    issued = tokens.issue_tokens("c" * 25)
    record = record_with(issued, "c" * 25)
    assert tokens.join_role(record, issued.worker) is NodeRole.WORKER
    assert tokens.join_role(record, issued.manager) is NodeRole.MANAGER
    assert tokens.join_role(record, issued.api) is None
    assert tokens.join_role(record, "") is None
    assert tokens.api_token_valid(record, issued.api)
    assert not tokens.api_token_valid(record, issued.worker)


def test_hashes_do_not_contain_the_secret() -> None:
    token = tokens.new_token("c" * 25)
    stored = tokens.hash_token(token)
    assert stored.startswith("sha256:")
    assert token.rsplit("-", 1)[1] not in stored
    assert tokens.token_matches(token, stored)
    assert not tokens.token_matches(token + "x", stored)


def test_non_ascii_input_is_refused_not_raised() -> None:
    record = record_with(tokens.issue_tokens("c" * 25), "c" * 25)
    assert tokens.join_role(record, "SHOAL-1-\udcff-é") is None
