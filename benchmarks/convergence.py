"""Convergence benchmark: shoal beside Docker swarm mode and the engine's own floor.

On the tests' Docker Engine, with the busybox test image, in one run:
- converge: a service of N replicas (N = 20, 50) created through shoal's API (one
  `shoal manager`, one `shoal agent`, file store) until N tasks report running (read
  from the manager's `/events` stream, which costs it nothing between changes); the same
  through swarm mode (`docker swarm init` on that engine, `docker service create
  --no-resolve-image`), once with the image by name and once by id (`sha256:...`, which
  skips the pull swarm mode otherwise tries first); and the floor: N plain containers
  created and started at once. Medians of 3, the four interleaved round by round so that
  load drifts hit all four.
- a killed task (SIGKILL to its container) replaced, restart delay 0: kill to the
  replacement running, shoal and swarm mode;
- leader failover: two managers, SIGKILL the leader, until the other says it leads;
- at scale: `shoal agent --runtime hollow --hollow-nodes 1000` and a service of 10,000
  replicas, until all run, on the file store and on etcd (the harness's EtcdServer), with
  the manager's RSS and the p50 of `GET /services` and `GET /tasks?service=...`.

Targets (from the issue) are printed beside the figures; a miss is a finding.

    python -m benchmarks.convergence [--quick] [--skip swarm,scale,...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._cluster import (
    DOCKER_HOST,
    Manager,
    RunningWatch,
    agent,
    cpu_seconds,
    docker_engine,
    floor,
    load_average,
    machine,
    median,
    rss_mb,
    start_profiler,
    storage_driver,
    timed,
    wait_for,
)
from controlplane.agent.identity import load_identity
from controlplane.agent.runtime.base import LABEL_CLUSTER
from tests.harness.images import BUSYBOX_IMAGE, shell_until_sigterm
from tests.harness.process import require_binary

GRACE = 5  # stop grace period of every benchmark container (they exit on SIGTERM anyway)


def service_body(name: str, replicas: int) -> dict[str, Any]:
    return {
        "name": name,
        "image": BUSYBOX_IMAGE,
        "command": shell_until_sigterm(),
        "replicas": replicas,
        "restart_policy": {"delay": 0},
        "stop_grace_period": GRACE,
    }


def running_of(manager: Manager, name: str) -> int:
    return int(manager.get(f"/services/{name}")["replicas"]["running"])


def gone(client: Any, label: str) -> Callable[[], bool]:
    return lambda: not client.api.containers(all=True, filters={"label": label})


# --- the three ways to start N containers ------------------------------------------------


#: replicas -> seconds from the create call until the leader had written the last task
WRITTEN_AFTER: dict[int, list[float]] = {}


def shoal_converge(manager: Manager, client: Any, cluster_label: str, n: int) -> float:
    name = f"conv-{uuid.uuid4().hex[:6]}"
    with RunningWatch(manager, name) as watch:
        wall0 = time.time()
        t0 = time.monotonic()
        manager.post("/services", service_body(name, n))
        t1 = watch.wait(n, timeout=600)
    assert running_of(manager, name) >= n  # the API agrees with its event stream
    created = [float(t["created"]) for t in manager.get("/tasks", service=name)]
    WRITTEN_AFTER.setdefault(n, []).append(max(created) - wall0)
    manager.delete(f"/services/{name}")
    wait_for(gone(client, cluster_label), timeout=300, interval=0.3, what="shoal cleanup")
    return t1 - t0


def docker_cli(*args: str) -> str:
    done = subprocess.run(
        ["docker", *args],
        env={"DOCKER_HOST": DOCKER_HOST, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def swarm_running(client: Any, name: str) -> list[dict[str, Any]]:
    tasks = client.api.tasks(filters={"service": name, "desired-state": "running"})
    return [t for t in tasks if t["Status"]["State"] == "running"]


def swarm_service(name: str, n: int, image: str = BUSYBOX_IMAGE) -> None:
    docker_cli(
        "service",
        "create",
        "--detach",
        "--quiet",
        "--name",
        name,
        "--replicas",
        str(n),
        "--no-resolve-image",
        "--restart-delay",
        "0s",
        "--stop-grace-period",
        f"{GRACE}s",
        image,
        *shell_until_sigterm(),
    )


def swarm_remove(client: Any, name: str) -> None:
    docker_cli("service", "rm", name)
    wait_for(
        gone(client, f"com.docker.swarm.service.name={name}"),
        timeout=300,
        interval=0.3,
        what="swarm cleanup",
    )


def swarm_converge(client: Any, n: int, image: str = BUSYBOX_IMAGE) -> float:
    name = f"conv-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    swarm_service(name, n, image)
    t1 = wait_for(lambda: len(swarm_running(client, name)) >= n, timeout=600, what=name)
    swarm_remove(client, name)
    return t1 - t0


# --- a killed task ---------------------------------------------------------------------


def shoal_replace(manager: Manager, client: Any, name: str) -> float:
    wait_for(lambda: running_of(manager, name) >= 1, timeout=120, what=f"{name} running")
    (task,) = manager.get("/tasks", service=name, state="running")
    t0 = time.monotonic()
    client.api.kill(task["container_id"])

    def replaced() -> bool:
        tasks = manager.get("/tasks", service=name, state="running")
        return any(t["id"] != task["id"] for t in tasks)

    return wait_for(replaced, timeout=120, interval=0.02, what="shoal replacement") - t0


def swarm_replace(client: Any, name: str) -> float:
    wait_for(lambda: len(swarm_running(client, name)) >= 1, timeout=120, what=name)
    (task,) = swarm_running(client, name)
    t0 = time.monotonic()
    client.api.kill(task["Status"]["ContainerStatus"]["ContainerID"])

    def replaced() -> bool:
        return any(t["ID"] != task["ID"] for t in swarm_running(client, name))

    return wait_for(replaced, timeout=120, interval=0.02, what="swarm replacement") - t0


# --- the parts -------------------------------------------------------------------------


def side_by_side(work: Path, sizes: list[int], rounds: int, kills: int) -> dict[str, Any]:
    out: dict[str, Any] = {"floor": {}, "shoal": {}, "swarm": {}, "swarm-id": {}, "kill": {}}
    discovery = f"file://{work / 'cluster'}"
    with docker_engine() as client:
        out["driver"] = storage_driver(client)
        manager = Manager(discovery, work, name="manager")
        manager.init()
        node = agent(discovery, work / "agent", work)
        cluster_label = ""
        swarm_on = False
        try:
            wait_for(lambda: len(manager.get("/nodes")) >= 1, timeout=60, what="node")
            identity = load_identity(work / "agent")
            assert identity is not None
            cluster_label = f"{LABEL_CLUSTER}={identity.cluster_id}"
            docker_cli("swarm", "init", "--advertise-addr", "127.0.0.1")
            swarm_on = True
            image_id = client.api.inspect_image(BUSYBOX_IMAGE)["Id"]
            for r in range(rounds):
                for n in sizes:
                    runs: dict[str, Callable[[int], float]] = {
                        "floor": lambda k: floor(client, k),
                        "shoal": lambda k: shoal_converge(manager, client, cluster_label, k),
                        "swarm": lambda k: swarm_converge(client, k),
                        "swarm-id": lambda k: swarm_converge(client, k, image_id),
                    }
                    for what, run in runs.items():
                        seconds = run(n)
                        out[what].setdefault(n, []).append(seconds)
                        print(f"  round {r + 1}: {what} {n} replicas {seconds:.2f} s", flush=True)
            manager.post("/services", service_body("killme", 1))
            swarm_service("killme", 1)
            for _ in range(kills):
                out["kill"].setdefault("shoal", []).append(shoal_replace(manager, client, "killme"))
                out["kill"].setdefault("swarm", []).append(swarm_replace(client, "killme"))
            print(f"  kills: {out['kill']}", flush=True)
            manager.delete("/services/killme")
            swarm_remove(client, "killme")
        finally:
            if swarm_on:
                with contextlib.suppress(Exception):
                    docker_cli("swarm", "leave", "--force")
            if cluster_label:
                with contextlib.suppress(Exception):
                    for svc in manager.get("/services"):
                        manager.delete(f"/services/{svc['name']}")
                    wait_for(gone(client, cluster_label), timeout=120, what="cleanup")
            node.stop()
            manager.stop()
            if cluster_label:
                for info in client.api.containers(all=True, filters={"label": cluster_label}):
                    client.api.remove_container(info["Id"], force=True)
    return out


def leads(manager: Manager) -> Callable[[], bool]:
    return lambda: bool(manager.health()["leader"])


def failover(work: Path, trials: int, ttl: float) -> list[float]:
    discovery = f"file://{work / 'failover'}"
    first = Manager(discovery, work, name="fo-0", lease_ttl=ttl)
    first.init()
    managers = [first]
    times: list[float] = []
    try:
        for trial in range(trials):
            while len(managers) < 2:
                managers.append(
                    Manager(discovery, work, name=f"fo-{trial}-{len(managers)}", lease_ttl=ttl)
                )
            wait_for(
                lambda: sum(bool(m.health()["leader"]) for m in managers) == 1,
                timeout=ttl * 3 + 10,
                what="one leader",
            )
            leader = next(m for m in managers if m.health()["leader"])
            other = next(m for m in managers if m is not leader)
            t0 = time.monotonic()
            leader.stop(signal.SIGKILL)
            managers.remove(leader)
            t1 = wait_for(
                leads(other),
                timeout=ttl * 3 + 10,
                interval=0.02,
                what="failover",
            )
            times.append(t1 - t0)
    finally:
        for m in managers:
            m.stop()
    return times


def at_scale(
    work: Path, store: str, discovery: str, nodes: int, replicas: int, profile: Path | None
) -> dict[str, float]:
    manager = Manager(discovery, work, name=f"scale-{store}")
    fleet = None
    try:
        manager.init()
        fleet = agent(
            discovery,
            work / f"hollow-{store}",
            work,
            runtime="hollow",
            hollow_nodes=nodes,
            name=f"hollow-{store}",
        )

        def ready() -> bool:
            if not fleet.alive():
                raise RuntimeError(f"the hollow fleet exited:\n{fleet.tail()}")
            listed = manager.get("/nodes")
            return sum(1 for n in listed if n["status"] == "ready") >= nodes

        wait_for(ready, timeout=600, interval=1.0, what=f"{nodes} hollow nodes ready")
        time.sleep(3.0)
        name = "big"
        wall0 = time.time()
        spies: list[subprocess.Popen[bytes]] = []
        if profile is not None:
            spies = [
                start_profiler(manager.child.pid, profile / f"manager-{store}.txt"),
                start_profiler(fleet.pid, profile / f"fleet-{store}.txt"),
            ]
        cpu0 = cpu_seconds(fleet.pid), cpu_seconds(manager.child.pid)
        t0 = time.monotonic()
        manager.post("/services", service_body(name, replicas))
        t1 = wait_for(
            lambda: running_of(manager, name) >= replicas,
            timeout=900,
            interval=0.2,
            what=f"{replicas} running",
        )
        cpu1 = cpu_seconds(fleet.pid), cpu_seconds(manager.child.pid)
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        time.sleep(2.0)
        rss = rss_mb(manager.child.pid)
        services = timed(lambda: manager.get("/services"), 20)
        tasks = timed(lambda: manager.get("/tasks", service=name), 10)
        tasks_received = timed(lambda: manager.get_bytes("/tasks", service=name), 10)
        page = timed(lambda: manager.get("/tasks", service=name, limit=500), 10)
        listed = manager.get("/tasks", service=name)
        created = [float(t["created"]) for t in listed]
        # `updated` is when the fleet made a task's latest status: here, running
        reported = sorted(float(t["updated"] or "nan") - wall0 for t in listed)
        return {
            "tasks": float(len(listed)),  # more than the replicas: some were replaced
            "page_p50": median(page),
            "load": float(load_average().split()[0]),
            "written_s": max(created) - wall0,
            "converge_s": t1 - t0,
            "rss_mb": rss,
            "services_p50": median(services),
            "tasks_p50": median(tasks),
            "tasks_received_p50": median(tasks_received),
            "running_half_s": reported[len(reported) // 2],
            "running_last_s": reported[-1],
            "fleet_cpu_s": cpu1[0] - cpu0[0],
            "manager_cpu_s": cpu1[1] - cpu0[1],
        }
    finally:
        if fleet is not None:
            fleet.stop()
        manager.stop()


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--skip", default="", help="comma-separated: converge, failover, scale-file, scale-etcd"
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy the manager and fleet at scale into this folder"
    )
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"machine: {machine()}", flush=True)
    if args.quick:
        sizes, rounds, kills, trials, ttl = [5], 1, 1, 1, 3.0
        nodes, replicas = 100, 1000
    else:
        sizes, rounds, kills, trials, ttl = [20, 50], 3, 3, 3, 10.0
        nodes, replicas = 1000, 10_000
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="shoal-bench-conv-") as tmp:
        work = Path(tmp)
        if "converge" not in skip:
            out = side_by_side(work, sizes, rounds, kills)
            say(f"docker engine: storage driver {out['driver']}, image {BUSYBOX_IMAGE}")
            say(
                f"{'replicas':>8} {'floor':>8} {'shoal':>8} {'swarm':>8} {'swarm-id':>9}"
                f" {'shoal/floor':>12}"
            )
            for n in sizes:
                f, s, w, wi = (median(out[k][n]) for k in ("floor", "shoal", "swarm", "swarm-id"))
                say(
                    f"{n:>8} {f:>7.2f}s {s:>7.2f}s {w:>7.2f}s {wi:>8.2f}s {s / f:>11.2f}x"
                    f"   target <= 1.15x: {verdict(s <= 1.15 * f)},"
                    f" ahead of swarm mode both ways: {verdict(s < min(w, wi))}"
                )
            written = ", ".join(
                f"{n}: {median(WRITTEN_AFTER.get(n, []) or [float('nan')]):.2f} s" for n in sizes
            )
            say(f"shoal: last task planned by the leader after (median) {written}")
            ks, kw = median(out["kill"]["shoal"]), median(out["kill"]["swarm"])
            say(
                f"killed task replaced (delay 0): shoal {ks:.2f} s, swarm mode {kw:.2f} s"
                f"   target <= 1 s: {verdict(ks <= 1.0)}"
            )
        if "failover" not in skip:
            times = failover(work, trials, ttl)
            fo = median(times)
            say(
                f"leader failover (lease TTL {ttl:g} s, SIGKILL): median {fo:.2f} s "
                f"({', '.join(f'{t:.2f}' for t in times)})"
                f"   target <= TTL + 1 s: {verdict(fo <= ttl + 1)}"
            )
        for store in ("file", "etcd"):
            if f"scale-{store}" in skip:
                continue
            if store == "file":
                r = at_scale(work, store, f"file://{work / 'scale'}", nodes, replicas, args.profile)
            else:
                from tests.harness.etcd import EtcdServer

                server = EtcdServer(base_dir=work / "etcd", binary=require_binary("etcd", why=""))
                server.start()
                try:
                    r = at_scale(
                        work, store, server.url("shoal-bench"), nodes, replicas, args.profile
                    )
                finally:
                    server.stop()
            limit = 5.0 if store == "file" else 10.0
            say(
                f"{replicas} replicas on {nodes} hollow nodes, {store}: running after "
                f"{r['converge_s']:.1f} s (last task planned after {r['written_s']:.1f} s; "
                f"target <= {limit:g} s: "
                f"{verdict(r['converge_s'] <= limit)}); manager RSS {r['rss_mb']:.0f} MB "
                f"(< 300 MB: {verdict(r['rss_mb'] < 300)}); GET /services p50 "
                f"{r['services_p50'] * 1000:.0f} ms, GET /tasks?service= p50 "
                f"{r['tasks_received_p50'] * 1000:.0f} ms until the whole answer is "
                f"received (< 100 ms: "
                f"{verdict(max(r['services_p50'], r['tasks_received_p50']) < 0.1)}), "
                f"{r['tasks_p50'] * 1000:.0f} ms with the client decoding its JSON "
                f"({verdict(r['tasks_p50'] < 0.1)}); "
                f"GET /tasks?service=&limit=500 p50 {r['page_p50'] * 1000:.0f} ms; "
                f"{r['tasks']:.0f} tasks listed (replacements if more than {replicas}); "
                f"load average {r['load']:.1f} at the end"
            )
            say(
                f"  {store}: the fleet reported half the tasks running after "
                f"{r['running_half_s']:.1f} s, the last after {r['running_last_s']:.1f} s"
            )
            say(
                f"  {store}: CPU seconds from the create call until all ran: hollow fleet "
                f"{r['fleet_cpu_s']:.1f} s, manager {r['manager_cpu_s']:.1f} s "
                f"(of {r['converge_s']:.1f} s wall on {os.cpu_count()} cores)"
            )
    print()
    print("\n".join(lines))
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
