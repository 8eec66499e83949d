"""Agent benchmark: task start latency on Docker, agent memory, and a hollow fleet's cost.

Prints:
- the time from a task written into the store (by hand, `tasks/<node>/<id>`, on a
  `file://` store that one `shoal agent --runtime docker` follows) to its `running`
  status seen by a watcher of `status/`: median and p99 for 1 task at a time (several
  rounds) and for 50 tasks written at once (the busybox test image, a shell that exits on
  SIGTERM, on the tests' Docker Engine);
- that agent's resident memory with those 50 tasks running;
- one `shoal agent --runtime hollow --hollow-nodes 1000` process heartbeating every 5 s:
  how long until all 1,000 nodes are registered, then its CPU (% of one core) over a
  window of 30-60 s and its resident memory.

    python -m benchmarks.agent [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks._cluster import (
    Child,
    agent,
    cpu_seconds,
    docker_engine,
    floor,
    load_average,
    machine,
    median,
    pct,
    remove_labelled,
    rss_mb,
    start_profiler,
    storage_driver,
)
from controlplane import keys
from controlplane.agent.identity import load_identity
from controlplane.agent.runtime.base import LABEL_CLUSTER
from controlplane.models import Task, TaskState, TaskStatus
from controlplane.models.task import TaskSpec
from discovery import EventType, Store, open_store
from tests.harness.images import BUSYBOX_IMAGE, shell_until_sigterm


async def node_id_of(store: Store, child: Child, *, count: int = 1, limit: float) -> list[str]:
    deadline = time.monotonic() + limit
    while True:
        listing = await store.list(keys.NODES)
        if len(listing.items) >= count:
            return [keys.last_segment(kv.key) for kv in listing.items]
        if not child.alive():
            raise RuntimeError(f"the agent exited:\n{child.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(listing.items)} of {count} nodes registered")
        await asyncio.sleep(0.2)


def make_task(node_id: str, slot: int) -> Task:
    return Task(
        id=uuid.uuid4().hex[:25],
        service="bench",
        service_id="bench",
        slot=slot,
        node_id=node_id,
        spec_version=1,
        spec=TaskSpec(image=BUSYBOX_IMAGE, command=shell_until_sigterm(), stop_grace_seconds=5.0),
        created=time.time(),
    )


async def start_round(store: Store, node_id: str, count: int) -> list[float]:
    """Write `count` tasks at once; seconds from each write to its `running` status."""
    start = (await store.list(keys.STATUS)).revision + 1
    written: dict[str, float] = {}
    latencies: dict[str, float] = {}
    done = asyncio.Event()

    async def follow() -> None:
        async for event in store.watch(keys.STATUS, start_revision=start):
            if event.type is not EventType.PUT or event.value is None:
                continue
            status = TaskStatus.load(event.value)
            if status.task_id in written and status.task_id not in latencies:
                if status.state is TaskState.RUNNING:
                    latencies[status.task_id] = time.perf_counter() - written[status.task_id]
                elif status.state.terminal:
                    raise RuntimeError(f"task {status.task_id}: {status.state} {status.error}")
                if len(latencies) == count:
                    done.set()
                    return

    follower = asyncio.create_task(follow())
    tasks = [make_task(node_id, slot) for slot in range(1, count + 1)]
    for task in tasks:
        written[task.id] = time.perf_counter()
        await store.put(keys.task(node_id, task.id), task.dump())
    try:
        async with asyncio.timeout(300):
            waiting = asyncio.create_task(done.wait())
            await asyncio.wait([waiting, follower], return_when=asyncio.FIRST_COMPLETED)
            if follower.done() and not done.is_set():
                follower.result()
            waiting.cancel()
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    return [latencies[task.id] for task in tasks]


async def clear_tasks(store: Store, client: Any, cluster_label: str, limit: float = 120) -> None:
    """Delete every task key; wait until the agent has removed their containers."""
    listing = await store.list(keys.TASKS)
    for kv in listing.items:
        await store.delete(kv.key)
    deadline = time.monotonic() + limit
    while client.api.containers(all=True, filters={"label": cluster_label}):
        if time.monotonic() > deadline:
            raise TimeoutError("the agent did not remove its containers")
        await asyncio.sleep(0.2)


async def docker_part(
    work: Path, rounds_one: int, rounds_fifty: int, profile: Path | None = None
) -> dict[str, Any]:
    discovery = f"file://{work / 'cluster'}"
    results: dict[str, Any] = {}
    with docker_engine() as client:
        results["driver"] = storage_driver(client)
        store = await open_store(discovery)
        child = agent(discovery, work / "agent", work)
        cluster_label = ""
        spy: subprocess.Popen[bytes] | None = None
        try:
            node_id = (await node_id_of(store, child, limit=60))[0]
            identity = load_identity(work / "agent")
            assert identity is not None
            # only this run's containers: other sessions share the engine
            cluster_label = f"{LABEL_CLUSTER}={identity.cluster_id}"
            if profile is not None:  # py-spy, collapsed stacks of every thread
                spy = start_profiler(child.pid, profile)
            one: list[float] = []
            for _ in range(rounds_one):
                one += await start_round(store, node_id, 1)
                await clear_tasks(store, client, cluster_label)
            results["one"] = one
            fifty: list[float] = []
            rss: list[float] = []
            floors: list[float] = []
            for _ in range(rounds_fifty):
                floors.append(await asyncio.to_thread(floor, client, 50))
                fifty += await start_round(store, node_id, 50)
                await asyncio.sleep(2.0)  # let the reports settle before reading memory
                rss.append(rss_mb(child.pid))
                await clear_tasks(store, client, cluster_label)
            results["fifty"] = fifty
            results["floor"] = floors
            results["rss50"] = rss
            results["rss0"] = rss_mb(child.pid)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
        finally:
            if cluster_label:
                with contextlib.suppress(Exception):
                    await clear_tasks(store, client, cluster_label, limit=60)
            if spy is not None and spy.poll() is None:
                spy.kill()
                spy.wait()
            child.stop()
            await store.close()
            if cluster_label:
                remove_labelled(client, cluster_label)
    return results


async def hollow_part(work: Path, nodes: int, window: float) -> dict[str, float]:
    discovery = f"file://{work / 'hollow-cluster'}"
    store = await open_store(discovery)
    started = time.perf_counter()
    child = agent(
        discovery, work / "hollow", work, runtime="hollow", hollow_nodes=nodes, name="hollow"
    )
    try:
        await node_id_of(store, child, count=nodes, limit=300)
        registered = time.perf_counter() - started
        await asyncio.sleep(min(10.0, window / 3))  # past the start-up burst
        cpu0, wall0 = cpu_seconds(child.pid), time.perf_counter()
        await asyncio.sleep(window)
        cpu1, wall1 = cpu_seconds(child.pid), time.perf_counter()
        alive = len((await store.list(keys.NODES)).items)
        return {
            "registered_s": registered,
            "cpu_pct": 100 * (cpu1 - cpu0) / (wall1 - wall0),
            "window_s": wall1 - wall0,
            "rss_mb": rss_mb(child.pid),
            "alive": alive,
        }
    finally:
        child.stop()
        await store.close()


def show(label: str, values: list[float]) -> str:
    return (
        f"{label:<38} median {median(values) * 1000:8.0f} ms"
        f"   p99 {pct(values, 0.99) * 1000:8.0f} ms   (n={len(values)})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter window")
    parser.add_argument("--hollow-nodes", type=int, default=1000)
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--skip-hollow", action="store_true")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the docker agent; collapsed stacks to this file"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    rounds_one, rounds_fifty, window = (3, 1, 15.0) if args.quick else (10, 3, 45.0)
    with tempfile.TemporaryDirectory(prefix="shoal-bench-agent-") as tmp:
        work = Path(tmp)
        if not args.skip_docker:
            d = await docker_part(work, rounds_one, rounds_fifty, args.profile)
            print(f"docker runtime, storage driver {d['driver']}, image {BUSYBOX_IMAGE}")
            print(show("1 task: written -> running", d["one"]))
            print(show("50 tasks at once: written -> running", d["fifty"]))
            last = [max(d["fifty"][i : i + 50]) for i in range(0, len(d["fifty"]), 50)]
            print(
                f"{'50 tasks: last one running (per round)':<38} "
                + ", ".join(f"{v:.2f} s" for v in last)
            )
            floors = ", ".join(f"{v:.2f} s" for v in d["floor"])
            print(f"{'engine floor: 50 plain containers':<38} {floors}  (just before each round)")
            print(
                f"{'agent RSS with 50 tasks running':<38} "
                + ", ".join(f"{v:.0f} MB" for v in d["rss50"])
                + f"   (after removing them: {d['rss0']:.0f} MB)"
            )
        if not args.skip_hollow:
            h = await hollow_part(work, args.hollow_nodes, window)
            print(
                f"hollow fleet of {args.hollow_nodes} nodes, heartbeat 5 s: all registered after "
                f"{h['registered_s']:.1f} s; {int(h['alive'])} alive at the end"
            )
            print(f"{'  CPU':<38} {h['cpu_pct']:.1f} % of a core over {h['window_s']:.0f} s")
            print(f"{'  RSS':<38} {h['rss_mb']:.0f} MB")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    asyncio.run(main())
