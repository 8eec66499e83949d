"""A Docker create body as a shoal service: one replica, restart `none`, not started.

`POST /containers/create` writes a service of 0 replicas labelled as a Docker API
container; `start` makes it 1, and the leader places and runs it like any task. What
classic Swarm read from the body is read the same way:

* `Env` entries `constraint:KEY==VALUE` and `affinity:KEY==VALUE` are placement rules,
  not variables (`affinity:container==X` means the one-off container or service X);
* the labels `com.docker.swarm.constraints` and `com.docker.swarm.affinities` hold a
  JSON list of rules without their prefix (`["node==node-1"]`), as compose wrote them;
* `HostConfig.RestartPolicy` becomes the restart policy (`no`: none, `always` and
  `unless-stopped`: any, `on-failure[:N]`: on-failure with N attempts);
* published ports are host-mode ports on the node that runs the container.

Fields shoal cannot honour (bind mounts, volumes, privileged mode, other networks,
`--rm`, attaching: `docker run` without `-d`) are refused with a message naming them,
never silently dropped.
"""

from __future__ import annotations

import json
import math
from typing import Any

from controlplane.api.control.ids import new_id
from controlplane.dockerapi.errors import DockerError
from controlplane.dockerapi.listing import ONE_OFF_LABEL, ONE_OFF_VALUE
from controlplane.models import ServiceSpec
from controlplane.models.service import (
    SERVICE_NAME,
    Placement,
    PortConfig,
    PublishMode,
    ResourceSpec,
    RestartCondition,
    RestartPolicy,
)
from scheduler.constraints import (
    AFFINITY_PREFIX,
    CLASSIC_PREFIX,
    ConstraintError,
    parse_affinity,
    parse_constraint,
)

CONSTRAINTS_LABEL = "com.docker.swarm.constraints"
AFFINITIES_LABEL = "com.docker.swarm.affinities"
#: Bumped by each `start` of a stopped container: a new task spec, so a new task.
STARTS_LABEL = "com.shoal.docker-api.starts"

#: HostConfig fields that change what a container is; refused unless empty or default.
UNSUPPORTED_HOST_CONFIG = {
    "Binds": "bind mounts, -v",
    "Mounts": "--mount",
    "VolumesFrom": "--volumes-from",
    "Privileged": "--privileged",
    "AutoRemove": "--rm",
    "Links": "--link",
    "Devices": "--device",
    "CapAdd": "--cap-add",
    "PidMode": "--pid",
    "IpcMode": "--ipc",
}
DEFAULT_NETWORKS = ("", "default", "bridge")


def _strings(value: Any, field: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise DockerError(400, f"{field}: must be a string or a list of strings")


def _rule(text: str, field: str) -> str:
    try:
        if text.startswith(AFFINITY_PREFIX):
            key = text[len(AFFINITY_PREFIX) :]
            if key.startswith("container"):  # a one-off container is a service here
                text = AFFINITY_PREFIX + "service" + key[len("container") :]
            parse_affinity(text)
        else:
            parse_constraint(text)
    except ConstraintError as exc:
        raise DockerError(400, f"{field}: {exc}") from None
    return text


def _label_rules(labels: dict[str, str], label: str, prefix: str) -> list[str]:
    if label not in labels:
        return []
    try:
        items = json.loads(labels[label])
    except ValueError:
        items = None
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise DockerError(400, f'Labels.{label}: must be a JSON list such as ["node==node-1"]')
    return [_rule(prefix + item.removeprefix(prefix), f"Labels.{label}") for item in items]


def _restart(policy: Any) -> RestartPolicy:
    if not isinstance(policy, dict):
        return RestartPolicy(condition=RestartCondition.NONE)
    name = policy.get("Name") or "no"
    if name == "no":
        return RestartPolicy(condition=RestartCondition.NONE)
    if name in ("always", "unless-stopped"):
        return RestartPolicy(condition=RestartCondition.ANY, delay=1.0)
    if name == "on-failure":
        attempts = _number(
            policy.get("MaximumRetryCount") or 0, "HostConfig.RestartPolicy.MaximumRetryCount"
        )
        if attempts < 0:
            raise DockerError(400, "HostConfig.RestartPolicy.MaximumRetryCount: must be >= 0")
        return RestartPolicy(
            condition=RestartCondition.ON_FAILURE, delay=1.0, max_attempts=attempts
        )
    raise DockerError(400, f"HostConfig.RestartPolicy.Name: unknown policy {name!r}")


def _ports(host: dict[str, Any]) -> list[PortConfig]:
    ports: list[PortConfig] = []
    bindings = host.get("PortBindings") or {}
    if not isinstance(bindings, dict):
        raise DockerError(400, "HostConfig.PortBindings: must be an object")
    for key, binds in bindings.items():
        target_text, _, protocol = str(key).partition("/")
        if not target_text.isdigit():
            raise DockerError(400, f"HostConfig.PortBindings: {key!r} is not PORT/PROTOCOL")
        if not isinstance(binds, list | None) or not all(
            isinstance(b, dict | None) for b in binds or []
        ):
            raise DockerError(400, f"HostConfig.PortBindings.{key}: must be a list of objects")
        for bind in binds or [{}]:
            host_port = str((bind or {}).get("HostPort") or "")
            if host_port and not host_port.isdigit():
                raise DockerError(
                    400,
                    f"HostConfig.PortBindings: host port {host_port!r} (ranges are not "
                    "supported by shoal)",
                )
            ports.append(
                PortConfig(
                    target=int(target_text),
                    published=int(host_port) if host_port else None,
                    protocol=protocol or "tcp",
                    mode=PublishMode.HOST,
                )
            )
    return ports


def _number(value: Any, field: str, kind: type[int] | type[float] = int) -> Any:
    """`value` as an int (or float), or `DockerError` 400 naming the field."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise DockerError(400, f"{field}: {value!r} is not a number") from None


def container_name(query_name: str | None) -> str:
    if not query_name:
        return f"c-{new_id()[:12]}"
    name = query_name.lstrip("/")
    if not SERVICE_NAME.match(name):
        raise DockerError(
            400,
            f"Invalid container name ({query_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are "
            "allowed (at most 63 characters)",
        )
    return name


def service_spec(body: dict[str, Any], *, name: str) -> ServiceSpec:
    """The service a create body stands for; `DockerError` 400 naming a bad field."""
    image = body.get("Image")
    if not isinstance(image, str) or not image:
        raise DockerError(400, "Image: a container needs an image")
    if any(body.get(f"Attach{stream}") for stream in ("Stdin", "Stdout", "Stderr")):
        raise DockerError(
            400,
            "attaching to a container (docker run without -d, docker create) is not "
            "supported by shoal: use docker run -d, then docker logs -f",
        )
    host = body.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise DockerError(400, "HostConfig: must be an object")
    for field, what in UNSUPPORTED_HOST_CONFIG.items():
        if host.get(field):
            raise DockerError(400, f"HostConfig.{field} ({what}) is not supported by shoal")
    if (host.get("NetworkMode") or "") not in DEFAULT_NETWORKS:
        raise DockerError(400, "HostConfig.NetworkMode (--network) is not supported by shoal")
    if body.get("Volumes"):
        raise DockerError(400, "Volumes (docker run -v VOLUME) is not supported by shoal")
    env: dict[str, str] = {}
    rules: list[str] = []
    for item in _strings(body.get("Env"), "Env") or []:
        if item.startswith((CLASSIC_PREFIX, AFFINITY_PREFIX)):
            rules.append(_rule(item, f"Env {item!r}"))
            continue
        key, sep, value = item.partition("=")
        if not key:
            raise DockerError(400, f"Env: {item!r} is not NAME=VALUE")
        if sep:
            env[key] = value
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise DockerError(400, "Labels: must be an object of strings")
    rules += _label_rules(labels, CONSTRAINTS_LABEL, CLASSIC_PREFIX)
    rules += _label_rules(labels, AFFINITIES_LABEL, AFFINITY_PREFIX)
    stop_timeout = body.get("StopTimeout")
    try:
        return ServiceSpec(
            name=name,
            image=image,
            command=_strings(body.get("Entrypoint"), "Entrypoint"),
            args=_strings(body.get("Cmd"), "Cmd"),
            env=env,
            labels={ONE_OFF_LABEL: ONE_OFF_VALUE},
            container_labels=dict(labels),
            workdir=body.get("WorkingDir") or None,
            user=body.get("User") or None,
            replicas=0,
            ports=_ports(host),
            limits=ResourceSpec(
                nano_cpus=_number(host.get("NanoCpus") or 0, "HostConfig.NanoCpus"),
                memory_bytes=_number(host.get("Memory") or 0, "HostConfig.Memory"),
            ),
            placement=Placement(constraints=rules),
            restart_policy=_restart(host.get("RestartPolicy")),
            stop_signal=body.get("StopSignal") or None,
            stop_grace_period=(
                _number(stop_timeout, "StopTimeout", float) if stop_timeout is not None else 10.0
            ),
            init=bool(host.get("Init")),
        )
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise DockerError(400, f"invalid container config: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def restarted(spec: ServiceSpec) -> ServiceSpec:
    """The spec with a new task spec (one more start), so the leader runs a new task."""
    labels = dict(spec.container_labels)
    labels[STARTS_LABEL] = str(int(labels.get(STARTS_LABEL, "0")) + 1)
    return spec.model_copy(update={"container_labels": labels, "replicas": 1})


def grace(value: str | None, default: float) -> float:
    """`?t=` of stop and restart: seconds, -1 meaning the container's own default."""
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise DockerError(400, f"t: {value!r} is not a number of seconds") from None
    if seconds < 0 or not math.isfinite(seconds):
        return default
    return seconds
