"""`/_ping`, `/version`, `/info` and `/events`: the cluster presented as one engine.

`/info` is classic Swarm's cluster view: the counts are the whole cluster's, `NCPU` and
`MemTotal` are summed over the ready nodes, and `SystemStatus` (which the docker CLI
prints under "Server:") lists the role of this manager (`primary` when it leads,
`replica` otherwise), the strategy, the filters and every node with its status.
"""

from __future__ import annotations

import json
import platform
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from controlplane.api.context import ApiContext
from controlplane.api.control.events import Action, EventType, cluster_events
from controlplane.dockerapi import listing
from controlplane.dockerapi.errors import not_supported
from controlplane.version import __version__

router = APIRouter()

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
#: The scheduler's strategy and filters, as `/info` names them (see scheduler/README.md).
STRATEGY = "spread"
FILTERS = "ready, platform, constraint, affinity, max-replicas, host-ports, resources"


def _context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


PING_HEADERS = {  # Api-Version comes with every answer (app.VersionPrefix)
    "OSType": "linux",
    "Docker-Experimental": "false",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


@router.api_route("/_ping", methods=["GET", "HEAD"])
async def ping(request: Request) -> Response:
    body = b"" if request.method == "HEAD" else b"OK"
    return Response(body, media_type="text/plain", headers=PING_HEADERS)


@router.get("/version")
async def version() -> dict[str, Any]:
    return {
        "Platform": {"Name": "shoal"},
        "Components": [
            {"Name": "shoal", "Version": __version__, "Details": {"ApiVersion": API_VERSION}}
        ],
        "Version": f"shoal/{__version__}",
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": _arch(),
        "KernelVersion": platform.release(),
        "BuildTime": "",
    }


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


@router.get("/info")
async def info(request: Request) -> dict[str, Any]:
    context = _context(request)
    view = context.view
    every = listing.containers(view)
    running = sum(1 for c in every if c.running)
    stopped = sum(1 for c in every if c.state == "exited")
    status: list[list[str]] = [
        ["Role", "primary" if context.is_leader() else "replica"],
    ]
    if not context.is_leader() and view.leader is not None:
        status.append(["Primary", view.leader.api_url])
    status += [["Strategy", STRATEGY], ["Filters", FILTERS], ["Nodes", str(len(view.node_specs))]]
    cpus = 0
    memory = 0
    for node_id in sorted(view.node_specs, key=lambda n: _hostname(context, n)):
        node, spec = view.nodes.get(node_id), view.node_specs[node_id]
        on_node = [c for c in every if c.node_id == node_id]
        status.append([f" {_hostname(context, node_id)}", node.addr if node else ""])
        status.append(["  └ ID", node_id])
        status.append(["  └ Status", "Healthy" if node is not None else "Unhealthy"])
        status.append(["  └ Availability", spec.availability.value])
        status.append(
            ["  └ Containers", f"{len(on_node)} ({sum(c.running for c in on_node)} running)"]
        )
        if node is not None:
            cpus += node.nano_cpus // 1_000_000_000
            memory += node.memory_bytes
            status.append(["  └ Labels", ", ".join(f"{k}={v}" for k, v in spec.labels.items())])
            status.append(["  └ ServerVersion", node.engine_version])
    cluster = view.cluster
    return {
        "ID": cluster.id if cluster else "",
        "Containers": len(every),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": stopped,
        "Images": 0,
        "Driver": "",
        "DriverStatus": None,
        "SystemStatus": status,
        "Plugins": {"Volume": None, "Network": None, "Authorization": None, "Log": None},
        "MemoryLimit": True,
        "SwapLimit": False,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "IPv4Forwarding": True,
        "Debug": False,
        "NFd": 0,
        "NGoroutines": 0,
        "SystemTime": listing.rfc3339(time.time()),
        "LoggingDriver": "",
        "CgroupDriver": "",
        "NEventsListener": 0,
        "KernelVersion": platform.release(),
        "OperatingSystem": "shoal",
        "OSType": "linux",
        "Architecture": _arch(),
        "IndexServerAddress": "",
        "RegistryConfig": None,
        "NCPU": cpus,
        "MemTotal": memory,
        "DockerRootDir": "",
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": socket.gethostname(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": f"shoal/{__version__}",
        "Runtimes": {},
        "DefaultRuntime": "",
        "Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False},
        "LiveRestoreEnabled": False,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": [],
        "Warnings": None,
    }


def _hostname(context: ApiContext, node_id: str) -> str:
    node = context.view.nodes.get(node_id)
    return node.hostname if node is not None else node_id


# --- events ------------------------------------------------------------------------------

_TASK_ACTIONS = {"running": "start", "complete": "die", "failed": "die", "shutdown": "die"}


def _docker_event(
    kind: EventType, action: Action, ref: str, attrs: dict[str, str]
) -> dict[str, Any] | None:
    now = time.time()
    if kind is EventType.TASK:
        word = "destroy" if action is Action.REMOVE else _TASK_ACTIONS.get(attrs.get("state", ""))
        if action is Action.CREATE:
            word = "create"
        if word is None:
            return None
        docker_type, docker_action = "container", word
    elif kind is EventType.NODE:
        docker_type = "node"
        docker_action = {"create": "engine_connect", "remove": "engine_disconnect"}.get(
            action.value, "update"
        )
    else:
        docker_type, docker_action = "service", action.value
    return {
        "Type": docker_type,
        "Action": docker_action,
        "Actor": {"ID": ref, "Attributes": attrs},
        "scope": "swarm",
        "time": int(now),
        "timeNano": int(now * 1e9),
    }


@router.get("/events")
async def events(
    request: Request, since: str | None = None, until: str | None = None
) -> StreamingResponse:
    context = _context(request)
    if since or until:
        raise not_supported("events --since and --until (past events)")

    async def stream() -> AsyncIterator[bytes]:
        async for event in cluster_events(context.view, until=context.closing):
            item = _docker_event(event.type, event.action, event.id, event.attributes)
            if item is not None:
                yield (json.dumps(item) + "\n").encode()

    return StreamingResponse(stream(), media_type="application/json")
