"""Scheduler benchmark: how long one pass takes, at the sizes the issue sets.

Run: python benchmarks/scheduler.py [--quick] [--repeat N]

Prints one line per scenario: nodes, tasks, services, seconds (best of --repeat runs),
microseconds per task, placed and unplaced counts. Node views are realistic: zones
a/b/c, a disk label, capacities from 2 CPUs / 4 GiB to 16 CPUs / 64 GiB, a few tasks
already running, 2% of nodes drained and 1% down, a tenth on arm64.
Benchmarks print; no test asserts a timing.
"""

from __future__ import annotations

import argparse
import functools
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduler import (
    NodeView,
    PlacementRequest,
    Platform,
    Resources,
    load_pipeline,
)

GiB = 1 << 30
MiB = 1 << 20
CPU = 1_000_000_000
SHAPES = [(2, 4), (4, 8), (4, 16), (8, 32), (16, 64)]  # (CPUs, GiB)


def cluster(count: int, *, seed: int = 1) -> list[NodeView]:
    rng = random.Random(seed)
    views = []
    for i in range(count):
        cpus, gib = rng.choice(SHAPES)
        running = rng.randint(0, 3)
        views.append(
            NodeView(
                id=f"node-{i:05}",
                hostname=f"host-{i:05}",
                addr=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                availability="drain" if rng.random() < 0.02 else "active",
                ready=rng.random() >= 0.01,
                labels={"zone": "abc"[i % 3], "disk": rng.choice(["ssd", "hdd"])},
                engine_labels={"storagedriver": "overlay2"},
                platform=Platform("linux", "arm64" if rng.random() < 0.1 else "amd64"),
                capacity=Resources(cpus * CPU, gib * GiB),
                reserved=Resources(running * CPU // 4, running * 256 * MiB),
                tasks_by_service={"system": running} if running else {},
                total_tasks=running,
            )
        )
    return views


def one_service(replicas: int) -> list[PlacementRequest]:
    return [PlacementRequest(service="web", slot=s, image="web:1") for s in range(1, replicas + 1)]


CONSTRAINTS = [
    "node.labels.zone==a",
    "node.labels.zone==b",
    "node.labels.zone!=c",
    "node.labels.disk==ssd",
    "constraint:zone==/[ab]/",
    "node.platform.arch==amd64",
]


def many_services(services: int, replicas: int) -> list[PlacementRequest]:
    """`services` services of `replicas` tasks, each with a constraint and a memory need."""
    wanted = []
    for s in range(services):
        constraint = CONSTRAINTS[s % len(CONSTRAINTS)]
        memory = (64, 128, 256, 512)[s % 4] * MiB
        for slot in range(1, replicas + 1):
            wanted.append(
                PlacementRequest(
                    service=f"svc-{s:05}",
                    slot=slot,
                    image=f"img-{s % 50}:1",
                    resources=Resources(CPU // 100, memory),
                    constraints=[constraint],
                )
            )
    return wanted


def measure(
    label: str,
    *,
    nodes: int,
    make: Callable[[], list[PlacementRequest]],
    strategy: str = "spread",
    repeat: int,
) -> None:
    views = cluster(nodes)
    wanted = make()
    pipeline = load_pipeline(strategy=strategy, seed=1)
    best = float("inf")
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = pipeline.place(wanted, views)
        best = min(best, time.perf_counter() - started)
    assert result is not None
    services = len({w.service for w in wanted})
    print(
        f"{label:<34} {strategy:<8} {nodes:>6} {len(wanted):>8} {services:>6} "
        f"{best:>8.3f} {best / len(wanted) * 1e6:>8.1f} "
        f"{len(result.placements):>8} {len(result.unplaced):>7}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 100k-task scenarios")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario; best kept")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.platform()}, {platform.machine()}")
    print(
        f"{'scenario':<34} {'strategy':<8} {'nodes':>6} {'tasks':>8} {'svcs':>6} "
        f"{'seconds':>8} {'us/task':>8} {'placed':>8} {'unplaced':>7}"
    )
    repeat = args.repeat
    measure("1 service x 10k replicas", nodes=1000, make=lambda: one_service(10_000), repeat=repeat)
    measure(
        "1 service x 10k replicas",
        nodes=1000,
        make=lambda: one_service(10_000),
        strategy="binpack",
        repeat=repeat,
    )
    measure(
        "1k services x 10, constraint+memory",
        nodes=1000,
        make=lambda: many_services(1000, 10),
        repeat=repeat,
    )
    print("growth: 20 tasks per node, 100 replicas per service, constraint + memory each")
    sizes = (1000, 2000) if args.quick else (1000, 2000, 5000)
    for nodes in sizes:
        tasks = 20 * nodes
        measure(
            f"{tasks // 100} services x 100",
            nodes=nodes,
            make=functools.partial(many_services, tasks // 100, 100),
            repeat=repeat,
        )
    print("growth: one service, 20 replicas per node")
    for nodes in sizes:
        measure(
            f"1 service x {20 * nodes // 1000}k replicas",
            nodes=nodes,
            make=functools.partial(one_service, 20 * nodes),
            repeat=repeat,
        )


if __name__ == "__main__":
    main()
