"""Discovery store benchmark: latency, throughput, watch delay and lease-renewal cost.

Prints, per backend (memory, file, and the real etcd and Consul started on loopback by
the test harness's server classes): put and get latency (median, p99) over sequential
calls, puts/s with 8 concurrent writers (each its own connection), watch delivery
latency (put to event, in one process), and the CPU the client process spends keeping
1,000 leases alive at a 5 s period.

    python -m benchmarks.discovery [--backends memory,file,etcd,consul] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from discovery import Store, open_store


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


async def latency(store: Store, count: int) -> dict[str, float]:
    puts: list[float] = []
    gets: list[float] = []
    value = b"x" * 256
    for i in range(count):
        t0 = time.perf_counter()
        await store.put(f"lat/{i % 100}", value)
        t1 = time.perf_counter()
        await store.get(f"lat/{i % 100}")
        t2 = time.perf_counter()
        puts.append(t1 - t0)
        gets.append(t2 - t1)
    return {
        "put_p50": statistics.median(puts),
        "put_p99": pct(puts, 0.99),
        "get_p50": statistics.median(gets),
        "get_p99": pct(gets, 0.99),
    }


async def throughput(url: str, *, writers: int, seconds: float) -> float:
    stores = [await open_store(url) for _ in range(writers)]
    done = 0
    stop = time.perf_counter() + seconds

    async def write(i: int, store: Store) -> None:
        nonlocal done
        n = 0
        while time.perf_counter() < stop:
            await store.put(f"tp/{i}/{n % 50}", b"y" * 128)
            n += 1
        done += n

    start = time.perf_counter()
    await asyncio.gather(*(write(i, s) for i, s in enumerate(stores)))
    elapsed = time.perf_counter() - start
    for s in stores:
        await s.close()
    return done / elapsed


async def watch_delay(store: Store, url: str, count: int) -> dict[str, float]:
    delays: list[float] = []
    start = (await store.list("wd/")).revision + 1
    sent: dict[str, float] = {}
    got = asyncio.Event()

    async def follow() -> None:
        async for event in store.watch("wd/", start_revision=start):
            if event.key in sent:
                delays.append(time.perf_counter() - sent[event.key])
                if len(delays) >= count:
                    got.set()
                    return

    follower = asyncio.ensure_future(follow())
    async with await open_store(url) as writer:
        for i in range(count):
            key = f"wd/{i}"
            sent[key] = time.perf_counter()
            await writer.put(key, b"z")
            await asyncio.sleep(0.005)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(got.wait(), 30)
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    return {"p50": statistics.median(delays), "p99": pct(delays, 0.99), "n": len(delays)}


async def lease_cost(store: Store, *, leases: int, period: float, seconds: float) -> float:
    """Client CPU seconds per wall second for renewing `leases` leases every `period`."""
    ttl = max(3 * period, store.min_lease_ttl)
    granted = [await store.grant(ttl) for _ in range(leases)]
    for n, lease in enumerate(granted):
        await store.put(f"leases/{n}", b"node", lease=lease.id)
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    sem = asyncio.Semaphore(64)

    async def renew(lease_id: int, offset: float) -> None:
        await asyncio.sleep(offset)
        while time.perf_counter() - wall0 < seconds:
            async with sem:
                await store.keep_alive(lease_id)
            await asyncio.sleep(period)

    await asyncio.gather(*(renew(lease.id, period * n / leases) for n, lease in enumerate(granted)))
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    for lease in granted:
        await store.revoke(lease.id)
    return cpu / wall


@contextlib.contextmanager
def servers(backends: list[str], workdir: Path) -> Iterator[dict[str, str]]:
    """A fresh URL per backend, starting real etcd and Consul when asked for."""
    urls: dict[str, str] = {}
    stack = contextlib.ExitStack()
    with stack:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        if "memory" in backends:
            urls["memory"] = f"memory://{prefix}"
        if "file" in backends:
            urls["file"] = f"file://{workdir}/store"
        if "etcd" in backends:
            from tests.harness.etcd import EtcdServer

            etcd = EtcdServer(base_dir=workdir / "etcd", binary="etcd", name="bench")
            etcd.start()
            stack.callback(etcd.stop)
            urls["etcd"] = f"etcd://{etcd.endpoint}/{prefix}"
        if "consul" in backends:
            from tests.harness.consul import ConsulServer

            consul_server = ConsulServer(name="bench", log_dir=workdir)
            consul_server.start()
            stack.callback(consul_server.stop)
            urls["consul"] = f"consul://{consul_server.endpoint}/{prefix}"
        yield urls


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    store = await open_store(url)
    try:
        yield store
    finally:
        await store.close()


async def run(backend: str, url: str, *, quick: bool) -> None:
    n = 200 if quick else 1000
    async with opened(url) as store:
        lat = await latency(store, n)
        tput = await throughput(url, writers=8, seconds=2 if quick else 5)
        wd = await watch_delay(store, url, 100 if quick else 500)
        cost = await lease_cost(store, leases=1000, period=5.0, seconds=10.0 if quick else 30.0)
    print(
        f"{backend:7} put p50 {ms(lat['put_p50'])} p99 {ms(lat['put_p99'])} | "
        f"get p50 {ms(lat['get_p50'])} p99 {ms(lat['get_p99'])} | "
        f"{tput:,.0f} puts/s (8 writers) | "
        f"watch p50 {ms(wd['p50'])} p99 {ms(wd['p99'])} ({wd['n']:.0f} events) | "
        f"1,000 leases @5 s: {cost * 100:.1f}% of a core",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="memory,file,etcd,consul")
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter runs")
    args = parser.parse_args()
    backends = args.backends.split(",")
    print(
        f"# {platform.node()}: {platform.processor() or platform.machine()}, "
        f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}"
    )
    with tempfile.TemporaryDirectory() as tmp, servers(backends, Path(tmp)) as urls:
        for backend in backends:
            asyncio.run(run(backend, urls[backend], quick=args.quick))


if __name__ == "__main__":
    main()
