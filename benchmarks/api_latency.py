"""The manager's API at 10,000 tasks, end to end, and its CPU while they converge.

    python -m benchmarks.api_latency                         # 1,000 hollow nodes, 10,000 replicas
    python -m benchmarks.api_latency --before /tmp/shoal-old --rounds 3   # old code vs this

One round: a `shoal manager` on a fresh file store, initialised, and a hollow fleet
(`shoal agent --runtime hollow --hollow-nodes N`, the current code); a service of R
replicas is created and `GET /services/big` polled every 0.2 s until all run, as
`benchmarks/convergence.py` does. Then, with the same client (httpx, in this process,
decoding the JSON as the convergence benchmark's `Manager.get` does): p50 and p99 of
`GET /tasks?service=big`, of the unfiltered `GET /tasks`, of `GET /tasks?service=big&limit=500`
and of `GET /services`; `bytes only` is the same call without decoding the JSON (what
the client's own decoding costs is the difference). The manager's CPU seconds (user +
system, /proc) from the create call until all run are printed with the convergence time,
and the leader's reconcile passes until then (count and seconds, from `GET /metrics`).

`--before DIR` runs the manager of each other round from DIR (a copy of an older
checkout, e.g. `git archive <commit> | tar -x -C DIR`) through PYTHONPATH, alternating
with this checkout's (or `--this DIR`'s) so that load drifts hit both. The fleet is this
checkout's, or `--fleet DIR`'s: the same in every round.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks._cluster import cpu_seconds, load_average, machine, pct, rss_mb, timed, wait_for
from tests.harness.process import free_port

SERVICE = "big"


class Child:
    """A `shoal ...` subprocess run by this interpreter, with its own PYTHONPATH."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, src: Path | None) -> None:
        env = dict(os.environ)
        if src is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
        self.log = log_dir / f"{name}.log"
        self._out = self.log.open("wb")
        code = "import sys; from controlplane.cli import main; sys.argv[0] = 'shoal'; main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *argv],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log_dir,  # not this checkout: `-c` puts the working directory first on sys.path
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


def reconcile_passes(metrics: str) -> tuple[float, float]:
    """(passes, seconds in them) from the manager's Prometheus text."""
    found = {"shoal_reconcile_passes_total": 0.0, "shoal_reconcile_duration_seconds_sum": 0.0}
    for line in metrics.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    return found["shoal_reconcile_passes_total"], found["shoal_reconcile_duration_seconds_sum"]


def one_round(
    work: Path,
    src: Path | None,
    fleet_src: Path | None,
    nodes: int,
    replicas: int,
    calls: int,
    timeout: float,
) -> dict[str, Any]:
    discovery = f"file://{work / 'cluster'}"
    port = free_port()
    manager = Child(
        "manager",
        [
            "manager",
            "--discovery",
            discovery,
            "--listen",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        work,
        src,
    )
    fleet: Child | None = None
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

    def serves() -> bool:
        if not manager.alive():
            raise RuntimeError(f"the manager exited:\n{manager.tail()}")
        try:
            return http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def get(path: str, **params: Any) -> Any:
        response = http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def raw(path: str, **params: Any) -> bytes:
        response = http.get(path, params=params)
        response.raise_for_status()
        return response.content

    try:
        wait_for(serves, timeout=60, what="the manager serving")
        init = http.post("/swarm/init")
        init.raise_for_status()
        http.headers["Authorization"] = f"Bearer {init.json()['api_token']}"
        fleet = Child(
            "fleet",
            [
                *("agent", "--discovery", discovery, "--state-dir", str(work / "hollow")),
                *("--advertise-addr", "127.0.0.1", "--runtime", "hollow", "--heartbeat", "5s"),
                *("--hollow-nodes", str(nodes), "--log-level", "warning"),
            ],
            work,
            fleet_src,
        )

        def ready() -> bool:
            assert fleet is not None
            if not fleet.alive():
                raise RuntimeError(f"the hollow fleet exited:\n{fleet.tail()}")
            return sum(1 for n in get("/nodes") if n["status"] == "ready") >= nodes

        wait_for(ready, timeout=600, interval=1.0, what=f"{nodes} hollow nodes ready")
        time.sleep(3.0)
        body = {"name": SERVICE, "image": "busybox", "command": ["sleep", "1d"]}
        cpu0 = cpu_seconds(manager.proc.pid)
        t0 = time.monotonic()
        created = http.post("/services", json={**body, "replicas": replicas})
        created.raise_for_status()
        t1 = wait_for(
            lambda: int(get(f"/services/{SERVICE}")["replicas"]["running"]) >= replicas,
            timeout=timeout,
            interval=0.2,
            what=f"{replicas} running",
        )
        cpu1 = cpu_seconds(manager.proc.pid)
        passes, pass_seconds = reconcile_passes(http.get("/metrics").text)
        time.sleep(2.0)
        out: dict[str, Any] = {
            "converge_s": t1 - t0,
            "manager_cpu_s": cpu1 - cpu0,
            "passes": passes,
            "pass_s": pass_seconds,
            "rss_mb": rss_mb(manager.proc.pid),
            "load": load_average(),
        }
        out["tasks"] = timed(lambda: get("/tasks", service=SERVICE), calls)
        out["tasks bytes only"] = timed(lambda: raw("/tasks", service=SERVICE), calls)
        out["tasks, all"] = timed(lambda: get("/tasks"), calls)
        out["tasks, limit=500"] = timed(lambda: get("/tasks", service=SERVICE, limit=500), calls)
        out["services"] = timed(lambda: get("/services"), 2 * calls)
        out["size_mb"] = len(raw("/tasks", service=SERVICE)) / 1e6
        return out
    finally:
        http.close()
        if fleet is not None:
            fleet.stop()
        manager.stop()


CALLS = ("tasks", "tasks bytes only", "tasks, all", "tasks, limit=500", "services")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=10, help="calls per figure")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of each code")
    parser.add_argument("--before", type=Path, help="an older source tree to alternate with")
    parser.add_argument("--this", type=Path, help="the manager's source tree (default: here)")
    parser.add_argument("--fleet", type=Path, help="the fleet's source tree (default: here)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to converge")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # children stopped on the way out
    print(f"machine: {machine()}", flush=True)
    here = args.this.resolve() if args.this else Path(__file__).resolve().parent.parent
    codes: list[tuple[str, Path | None]] = [("this", here)]
    if args.before is not None:
        codes.insert(0, ("before", args.before.resolve()))
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in codes}
    for index in range(args.rounds):
        for name, src in codes:
            with tempfile.TemporaryDirectory(prefix="shoal-bench-api-") as tmp:
                out = one_round(
                    Path(tmp), src, args.fleet, args.nodes, args.replicas, args.calls, args.timeout
                )
            results[name].append(out)
            figures = ", ".join(
                f"{call} p50 {statistics.median(out[call]) * 1000:.0f} ms "
                f"p99 {pct(out[call], 0.99) * 1000:.0f} ms"
                for call in CALLS
            )
            print(
                f"round {index + 1} {name}: load {out['load']}; "
                f"{args.replicas} running after {out['converge_s']:.1f} s, manager CPU "
                f"{out['manager_cpu_s']:.1f} s ({out['passes']:.0f} reconcile passes, "
                f"{out['pass_s']:.1f} s), RSS {out['rss_mb']:.0f} MB, "
                f"answer {out['size_mb']:.2f} MB; {figures}",
                flush=True,
            )
    for name, rounds in results.items():
        medians = {
            call: statistics.median(statistics.median(r[call]) for r in rounds) for call in CALLS
        }
        converge = statistics.median(r["converge_s"] for r in rounds)
        cpu = statistics.median(r["manager_cpu_s"] for r in rounds)
        print(
            f"{name} (median of {len(rounds)} rounds): converge {converge:.1f} s, "
            f"manager CPU {cpu:.1f} s; "
            + ", ".join(f"{call} p50 {ms * 1000:.0f} ms" for call, ms in medians.items()),
            flush=True,
        )
    print(f"load average at the end: {load_average()}", flush=True)


if __name__ == "__main__":
    main()
