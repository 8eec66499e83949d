"""A manager's presence in the store: `managers/<id>` on the manager's own lease.

The record says "this manager is alive and serves its API at this URL"; `GET /swarm`
lists managers from these keys. It lives on a lease that this loop renews every third
of its TTL, so a killed manager disappears within the TTL with nobody cleaning up. A
lease that ended anyway (the process was paused past its TTL) is granted afresh and
the record written again: presence heals itself. `stop()` revokes the lease, so a clean
shutdown removes the record at once.

This lease is separate from the leader lease on purpose: every manager is registered,
only one leads, and resigning leadership must not make a manager look dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from controlplane import keys
from controlplane.models import ManagerRecord
from discovery import DiscoveryError, LeaseNotFound, Store

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class Registration:
    """Keeps `managers/<record.id>` alive until `stop()`."""

    def __init__(self, store: Store, *, record: ManagerRecord, ttl: float) -> None:
        self.store = store
        self.record = record
        self.ttl = max(ttl, store.min_lease_ttl)
        self.lease: int | None = None
        self.registered = asyncio.Event()

    @property
    def key(self) -> str:
        return keys.manager(self.record.id)

    async def run(self) -> None:
        """Register, then renew forever (until cancelled or `stop()`)."""
        every = self.ttl / 3
        while True:
            try:
                if self.lease is None:
                    await self._register()
                await asyncio.sleep(every)
                assert self.lease is not None
                await self.store.keep_alive(self.lease)
            except LeaseNotFound:
                log.warning("manager lease of %s ended; registering again", self.record.id)
                self.lease = None
                self.registered.clear()
            except DiscoveryError as exc:
                log.warning("cannot renew the registration of %s: %s", self.record.id, exc)
                await asyncio.sleep(RETRY_SECONDS)

    async def _register(self) -> None:
        lease = await self.store.grant(self.ttl)
        try:
            await self.store.put(self.key, self.record.dump(), lease=lease.id)
        except BaseException:
            with contextlib.suppress(DiscoveryError, asyncio.CancelledError):
                await asyncio.shield(self.store.revoke(lease.id))
            raise
        self.lease = lease.id
        self.registered.set()
        log.info("manager %s registered at %s", self.record.id, self.record.api_url)

    async def stop(self) -> None:
        """Remove the record now by revoking its lease (no error if it already ended)."""
        lease, self.lease = self.lease, None
        self.registered.clear()
        if lease is not None:
            with contextlib.suppress(DiscoveryError):
                await self.store.revoke(lease)
