"""Waiting for services to converge: what `create`, `update`, `scale`, `rollback` and
`stack deploy` do unless `--detach`, with progress on stderr. Ctrl-C stops the waiting,
never the deployment, which the leader carries on."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import typer

from controlplane.cli import output
from controlplane.cli.client import CliError, ManagerClient
from controlplane.models import ServiceSpec
from controlplane.models.service import ServiceMode

POLL_SECONDS = float(os.environ.get("SHOAL_POLL_SECONDS", "0.5"))
#: A global service with no task this long after the change has no eligible node.
GLOBAL_GRACE_SECONDS = 5.0
ACTIVE_STATES = ("updating", "rolling back")
PAUSED_STATES = ("paused", "rollback paused")
#: Observed states of a task whose container may still run.
STOPPABLE = ("preparing", "starting", "running")


@dataclass
class Watch:
    """One service being waited for, and what has been learnt about it so far."""

    name: str
    version: int  # the spec version the command wrote
    started: float = field(default_factory=time.monotonic)
    moves_tasks: bool | None = None  # does the change replace tasks? (first poll decides)
    acknowledged: bool = False  # has the leader acted on the change?


@dataclass
class Convergence:
    name: str
    desired: int
    running: int
    slots: list[tuple[str, str, str]]  # (label, state, note) per slot or node
    update_state: str = ""
    done: bool = False
    failure: str | None = None

    @property
    def summary(self) -> str:
        shown = min(self.running, self.desired)  # while scaling down, more still run
        text = f"{self.name}: overall progress: {shown} out of {self.desired} tasks"
        if self.update_state in ACTIVE_STATES:
            text += f" ({self.update_state})"
        waiting = [note for _, state, note in self.slots if state == "pending" and note]
        if waiting:
            text += f"; {len(waiting)} pending: {waiting[0]}"
        return text


def moves_tasks(service: dict[str, Any]) -> bool:
    """Whether the latest change alters what a task runs (else no task is replaced)."""
    from controlplane.reconciler.taskspec import task_spec_for

    previous = service.get("previous_spec")
    if previous is None:
        return True
    before = task_spec_for(ServiceSpec.model_validate(previous))
    return before != task_spec_for(ServiceSpec.model_validate(service["spec"]))


def assess(
    watch: Watch, service: dict[str, Any], tasks: list[dict[str, Any]], *, now: float
) -> Convergence:
    """How far one service is from its desired state. Pure, apart from `watch` notes.

    The change is done when the leader has acted on it (a task of the new version
    exists, or an update was seen running), no update is in progress, exactly the
    desired number of tasks is desired-running and running, and no task told to stop
    still runs (so after `scale web=0` nothing of web runs). A paused update is a
    failure, as is an update the leader rolled back on its own.
    """
    spec = service["spec"]
    state = service.get("update_state") or ""
    if watch.moves_tasks is None:
        watch.moves_tasks = service["spec_version"] != watch.version or moves_tasks(service)
    if state in ACTIVE_STATES or any(t["spec_version"] >= watch.version for t in tasks):
        watch.acknowledged = True
    live = [t for t in tasks if t["desired_state"] == "running"]
    running = sum(1 for t in live if t["state"] == "running")
    global_mode = spec["mode"] == ServiceMode.GLOBAL.value
    desired = len(live) if global_mode else int(spec["replicas"])
    slots = [
        (
            str(t["slot"]) if t.get("slot") is not None else t.get("node_id", ""),
            t["state"],
            t.get("error") or (t.get("message") if t["state"] == "pending" else "") or "",
        )
        for t in sorted(live, key=lambda t: (t.get("slot") or 0, t.get("node_id", "")))
    ]
    result = Convergence(
        name=watch.name, desired=desired, running=running, slots=slots, update_state=state
    )
    if watch.acknowledged and state in PAUSED_STATES:
        result.failure = service.get("update_message") or f"the update is {state}"
        return result
    # tasks told to stop that still run: a scale-down or a replaced task is not done yet
    stopping = [t for t in tasks if t["desired_state"] != "running" and t["state"] in STOPPABLE]
    settled = (
        state not in ACTIVE_STATES and len(live) == desired and running == desired and not stopping
    )
    if global_mode and not live and not watch.acknowledged:
        settled = now - watch.started >= GLOBAL_GRACE_SECONDS  # no eligible node, it seems
    elif watch.moves_tasks and desired > 0 and not watch.acknowledged:
        settled = False
    result.done = settled
    if (
        settled
        and state in ("rolling back", "rolled back")
        and service["spec_version"] > watch.version
    ):
        result.failure = service.get("update_message") or "the update was rolled back"
    return result


def wait_converged(api: ManagerClient, versions: dict[str, int], *, quiet: bool = False) -> None:
    """Poll until every service converged, showing progress on stderr; Ctrl-C stops
    the waiting only. Raises `CliError` when an update pauses or is rolled back."""
    watches = [Watch(name=name, version=version) for name, version in versions.items()]
    display = output.ProgressDisplay(quiet=quiet)
    finished: dict[str, Convergence] = {}
    try:
        while True:
            current = []
            for watch in watches:
                if watch.name in finished:
                    current.append(finished[watch.name])
                    continue
                # Tasks first, then the service: its update state is then at least as
                # new as the tasks, so a stale "completed" is never read beside the
                # first task of a new update (which the leader writes with "updating").
                tasks = api.get("/tasks", params={"service": watch.name})
                service = api.get(f"/services/{watch.name}")
                result = assess(watch, service, tasks, now=time.monotonic())
                if result.done or result.failure:
                    finished[watch.name] = result
                current.append(result)
            display.show(current)
            if len(finished) == len(watches):
                break
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        display.close()
        names = " ".join(sorted(versions))
        typer.echo(
            f"Stopped waiting; the deployment goes on. Follow it with `shoal service ps {names}`.",
            err=True,
        )
        return
    display.close()
    failures = [f"{r.name}: {r.failure}" for r in finished.values() if r.failure]
    if failures:
        raise CliError("\n".join(failures))
    display.converged()
