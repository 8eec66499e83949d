"""`Store.max_txn_ops`: the largest transaction each backend takes, on every backend.

Callers that write many keys (the leader's task writes, a stack deploy, batched status
reports) split their work by this number, so it must be exact: a transaction of
`max_txn_ops` compares and operations applies whole, and one more item is refused with
`InvalidArgument` before anything is written.
"""

from __future__ import annotations

import pytest

from discovery import Compare, InvalidArgument, Put, Store


async def test_a_transaction_of_max_txn_ops_items_applies_whole(store: Store) -> None:
    limit = store.max_txn_ops
    assert limit >= 64  # every backend takes at least Consul's 64
    compares = [Compare("limit/guard", 0)]
    puts = [Put(f"limit/{i:05d}", b"x") for i in range(limit - len(compares))]
    result = await store.txn(compares, puts)
    assert result.succeeded
    listing = await store.list("limit/")
    assert len(listing.items) == limit - 1


async def test_one_item_more_is_refused_and_nothing_is_written(store: Store) -> None:
    limit = store.max_txn_ops
    puts = [Put(f"over/{i:05d}", b"x") for i in range(limit)]
    with pytest.raises(InvalidArgument, match=str(limit)):
        await store.txn([Compare("over/guard", 0)], puts)
    assert (await store.list("over/")).items == []
