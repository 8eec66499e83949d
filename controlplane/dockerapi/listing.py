"""The cluster's containers as the Engine API shows them, and finding one by reference.

Every task that reached a node is a container, named `/<node>/<name>` as classic Swarm
named them: `<name>` is the container's name on its node for a service's task, and the
container's own name for one created through this API. A container created here has one
entry however often it was started: its newest task, under the service's id (so the id
`docker run` printed keeps working); before its first start it has no task and shows as
`Created` on no node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controlplane.agent.runtime.docker import container_name
from controlplane.api.control.view import ClusterView
from controlplane.dockerapi.errors import DockerError, no_such_container
from controlplane.durations import human_duration
from controlplane.models import Task, TaskState, TaskStatus
from controlplane.models.service import ServiceRecord

#: The service label that marks a container created through the Docker API.
ONE_OFF_LABEL = "com.shoal.docker-api"
ONE_OFF_VALUE = "container"

_CREATED_STATES = frozenset(
    {TaskState.NEW, TaskState.PENDING, TaskState.ASSIGNED, TaskState.PREPARING, TaskState.STARTING}
)


def is_one_off(record: ServiceRecord) -> bool:
    return record.spec.labels.get(ONE_OFF_LABEL) == ONE_OFF_VALUE


@dataclass(frozen=True, slots=True)
class DockerContainer:
    id: str
    name: str  # without the node
    node_id: str
    node_name: str
    service: ServiceRecord | None
    task: Task | None
    status: TaskStatus | None

    @property
    def one_off(self) -> bool:
        return self.service is not None and is_one_off(self.service)

    @property
    def full_name(self) -> str:
        return f"/{self.node_name}/{self.name}" if self.node_name else f"/{self.name}"

    @property
    def task_state(self) -> TaskState | None:
        if self.task is None:
            return None
        if self.status is not None:
            return self.status.state
        return TaskState.ASSIGNED if self.task.node_id else TaskState.PENDING

    @property
    def state(self) -> str:
        """Docker's state word: created, running or exited."""
        state = self.task_state
        if state is None or state in _CREATED_STATES:
            return "created"
        return "running" if state is TaskState.RUNNING else "exited"

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def exit_code(self) -> int:
        return self.status.exit_code or 0 if self.status is not None else 0

    @property
    def image(self) -> str:
        if self.task is not None:
            return self.task.spec.image
        return self.service.spec.image if self.service is not None else ""

    @property
    def created(self) -> float:
        if self.task is not None and self.task.created:
            return self.task.created
        return self.service.created if self.service is not None else 0.0


def _node_name(view: ClusterView, node_id: str) -> str:
    node = view.nodes.get(node_id)
    return node.hostname if node is not None and node.hostname else node_id


def containers(view: ClusterView) -> list[DockerContainer]:
    """Every container of the cluster, newest first (as `docker ps` lists them)."""
    found: list[DockerContainer] = []
    newest: dict[str, Task] = {}
    for task in view.tasks.values():
        record = view.services.get(task.service)
        if record is not None and is_one_off(record):
            if task.service not in newest or task.created > newest[task.service].created:
                newest[task.service] = task
            continue
        if not task.node_id or record is None:  # no node yet, or being removed
            continue
        status = view.statuses.get(task.id)
        found.append(
            DockerContainer(
                id=status.container_id if status is not None and status.container_id else task.id,
                name=container_name(task),
                node_id=task.node_id,
                node_name=_node_name(view, task.node_id),
                service=record,
                task=task,
                status=status,
            )
        )
    for record in view.services.values():
        if not is_one_off(record):
            continue
        latest = newest.get(record.spec.name)
        node_id = latest.node_id if latest is not None else ""
        found.append(
            DockerContainer(
                id=record.id,
                name=record.spec.name,
                node_id=node_id,
                node_name=_node_name(view, node_id) if node_id else "",
                service=record,
                task=latest,
                status=view.statuses.get(latest.id) if latest is not None else None,
            )
        )
    return sorted(found, key=lambda c: (-c.created, c.id))


def resolve(view: ClusterView, ref: str) -> DockerContainer:
    """By id, by name (`name`, `/name`, `node/name`), then by unique id prefix."""
    wanted = ref.lstrip("/")
    every = containers(view)
    for container in every:
        if wanted in (container.id, container.name, container.full_name.lstrip("/")):
            return container
        if container.task is not None and wanted == container.task.id:
            return container
    prefixed = [c for c in every if wanted and c.id.startswith(wanted)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise DockerError(400, f"multiple containers match the prefix {wanted!r}: be more precise")
    raise no_such_container(ref)


# --- the Engine's shapes ---------------------------------------------------------------


def rfc3339(epoch: float | None) -> str:
    if not epoch:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def status_text(container: DockerContainer, *, now: float | None = None) -> str:
    now = time.time() if now is None else now
    status = container.status
    if container.state == "running":
        started = status.started_at if status is not None and status.started_at else now
        return f"Up {human_duration(now - started)}"
    if container.state == "exited":
        finished = status.finished_at if status is not None and status.finished_at else None
        ago = f" {human_duration(now - finished)} ago" if finished else ""
        return f"Exited ({container.exit_code}){ago}"
    return "Created"


def _command(container: DockerContainer) -> list[str]:
    spec = container.task.spec if container.task is not None else None
    if spec is not None:
        return [*(spec.command or []), *(spec.args or [])]
    if container.service is not None:
        return [*(container.service.spec.command or []), *(container.service.spec.args or [])]
    return []


def labels_of(container: DockerContainer) -> dict[str, str]:
    labels: dict[str, str] = {}
    if container.service is not None:
        labels.update(container.service.spec.container_labels)
    if container.task is not None:
        labels.update(container.task.spec.labels)
        labels["com.shoal.service"] = container.task.service
        labels["com.shoal.task"] = container.task.id
        labels["com.shoal.node"] = container.task.node_id
    return labels


def summary(container: DockerContainer) -> dict[str, Any]:
    """One entry of `GET /containers/json`."""
    ports = []
    if container.status is not None:
        for endpoint in container.status.endpoints:
            ports.append(
                {
                    "IP": endpoint.host_ip,
                    "PrivatePort": endpoint.target_port,
                    "PublicPort": endpoint.published_port,
                    "Type": endpoint.protocol,
                }
            )
    return {
        "Id": container.id,
        "Names": [container.full_name],
        "Image": container.image,
        "ImageID": "",
        "Command": " ".join(_command(container)),
        "Created": int(container.created),
        "Ports": ports,
        "Labels": labels_of(container),
        "State": container.state,
        "Status": status_text(container),
        "HostConfig": {"NetworkMode": "default"},
        "NetworkSettings": {"Networks": {}},
        "Mounts": [],
    }


def inspect_document(container: DockerContainer, engine: dict[str, Any] | None) -> dict[str, Any]:
    """`GET /containers/{id}/json`: the node engine's own answer when there is one, with
    the cluster's id and name and classic Swarm's `Node`; else what the store knows."""
    status = container.status
    node = {"ID": container.node_id, "Name": container.node_name} if container.node_id else None
    if engine is not None:
        return {**engine, "Id": container.id, "Name": container.full_name, "Node": node}
    spec = container.task.spec if container.task is not None else None
    service_spec = container.service.spec if container.service is not None else None
    env = spec.env if spec is not None else (service_spec.env if service_spec else {})
    return {
        "Id": container.id,
        "Created": rfc3339(container.created),
        "Name": container.full_name,
        "Path": (_command(container) or [""])[0],
        "Args": _command(container)[1:],
        "Image": container.image,
        "State": {
            "Status": container.state,
            "Running": container.running,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": 0,
            "ExitCode": container.exit_code,
            "Error": status.error if status is not None else "",
            "StartedAt": rfc3339(status.started_at if status else None),
            "FinishedAt": rfc3339(status.finished_at if status else None),
        },
        "Config": {
            "Image": container.image,
            "Cmd": (spec.args if spec else None),
            "Entrypoint": (spec.command if spec else None),
            "Env": [f"{key}={value}" for key, value in env.items()],
            "Labels": labels_of(container),
            "Tty": False,
            "OpenStdin": False,
        },
        "HostConfig": {"NetworkMode": "default"},
        "NetworkSettings": {"Ports": {}},
        "Mounts": [],
        "Node": node,
    }
