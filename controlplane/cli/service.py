"""`shoal service`: create, list, inspect, update, scale, roll back and remove services.

Flags are docker's (`-p 8080:80`, `-e K=V`, `--constraint`, `--limit-memory 256M`,
`--update-parallelism 2`, ...) and their values are read by the same parsers as compose
files (`controlplane.compose`), so `8080:80/udp` or `1m30s` mean the same in both. A
flag value that cannot be read is a usage error (exit 2) naming the flag.

`create`, `update`, `scale` and `rollback` wait until the service has converged and show
progress (see `wait_converged`), unless `--detach`; Ctrl-C stops the waiting, never the
deployment, which the leader carries on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from controlplane.cli import output
from controlplane.cli.client import (
    CliError,
    DebugOption,
    HostOption,
    ManagerClient,
    completion_get,
    reported,
    session,
)
from controlplane.compose import units
from controlplane.compose.envfile import EnvFileError, read_env_file
from controlplane.compose.ports import parse_port
from controlplane.models import PortConfig, ServiceSpec
from controlplane.models.service import FailureAction, RestartCondition, ServiceMode, UpdateOrder
from scheduler.constraints import (
    AFFINITY_PREFIX,
    ConstraintError,
    parse_affinity,
    parse_constraint,
    parse_preference,
)
from scheduler.units import format_bytes

T = TypeVar("T")

app = typer.Typer(name="service", help="Manage services.", no_args_is_help=True)

# --- shell completion -------------------------------------------------------------------


def complete_services(incomplete: str) -> list[str]:
    """Service names for the shell, asked from the manager (nothing if it is away)."""
    found = completion_get("/services") or []
    return [s["name"] for s in found if s["name"].startswith(incomplete)]


def complete_scale(incomplete: str) -> list[str]:
    """`web=` for `service scale`: the name, waiting for its count."""
    return [f"{name}=" for name in complete_services(incomplete.split("=", 1)[0])]


ServiceRef = Annotated[
    str,
    typer.Argument(metavar="SERVICE", help="Name or id.", autocompletion=complete_services),
]
ServiceRefs = Annotated[
    list[str],
    typer.Argument(metavar="SERVICE...", help="Names or ids.", autocompletion=complete_services),
]

# --- options shared by create and update ----------------------------------------------

Texts = list[str]
Detach = Annotated[
    bool,
    typer.Option("--detach", "-d", help="Return at once; do not wait for the service to converge."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the service id.")]
Replicas = Annotated[int | None, typer.Option("--replicas", min=0, help="Number of tasks.")]
LimitCpu = Annotated[
    str | None, typer.Option("--limit-cpu", metavar="CPUS", help="CPU limit, e.g. 0.5.")
]
LimitMemory = Annotated[
    str | None, typer.Option("--limit-memory", metavar="SIZE", help="Memory limit, e.g. 256M.")
]
ReserveCpu = Annotated[
    str | None, typer.Option("--reserve-cpu", metavar="CPUS", help="CPUs a node must have free.")
]
ReserveMemory = Annotated[
    str | None,
    typer.Option("--reserve-memory", metavar="SIZE", help="Memory a node must have free."),
]
RestartConditionOpt = Annotated[
    RestartCondition | None, typer.Option("--restart-condition", help="When to restart a task.")
]
RestartDelay = Annotated[
    str | None, typer.Option("--restart-delay", metavar="DURATION", help="Wait between restarts.")
]
RestartMaxAttempts = Annotated[
    int | None,
    typer.Option("--restart-max-attempts", min=0, help="Give up after this many (0: never)."),
]
RestartWindow = Annotated[
    str | None,
    typer.Option(
        "--restart-window", metavar="DURATION", help="Window the attempts are counted in."
    ),
]
UpdateParallelism = Annotated[
    int | None, typer.Option("--update-parallelism", min=0, help="Tasks replaced at once (0: all).")
]
UpdateDelay = Annotated[
    str | None, typer.Option("--update-delay", metavar="DURATION", help="Wait between batches.")
]
UpdateOrderOpt = Annotated[
    UpdateOrder | None, typer.Option("--update-order", help="Stop or start first.")
]
UpdateFailureAction = Annotated[
    FailureAction | None, typer.Option("--update-failure-action", help="On a failed update.")
]
UpdateMonitor = Annotated[
    str | None,
    typer.Option("--update-monitor", metavar="DURATION", help="Watch each new task this long."),
]
UpdateMaxFailureRatio = Annotated[
    float | None,
    typer.Option("--update-max-failure-ratio", min=0, max=1, help="Failures tolerated (0 to 1)."),
]
RollbackParallelism = Annotated[
    int | None, typer.Option("--rollback-parallelism", min=0, help="Tasks rolled back at once.")
]
RollbackDelay = Annotated[
    str | None, typer.Option("--rollback-delay", metavar="DURATION", help="Wait between batches.")
]
RollbackOrderOpt = Annotated[
    UpdateOrder | None, typer.Option("--rollback-order", help="Stop or start first.")
]
RollbackFailureAction = Annotated[
    FailureAction | None,
    typer.Option("--rollback-failure-action", help="On a failed rollback: pause or continue."),
]
RollbackMonitor = Annotated[
    str | None,
    typer.Option("--rollback-monitor", metavar="DURATION", help="Watch each task this long."),
]
RollbackMaxFailureRatio = Annotated[
    float | None,
    typer.Option("--rollback-max-failure-ratio", min=0, max=1, help="Failures tolerated."),
]
Workdir = Annotated[str | None, typer.Option("--workdir", "-w", help="Working directory.")]
User = Annotated[str | None, typer.Option("--user", "-u", help="User[:group] to run as.")]
Entrypoint = Annotated[
    str | None,
    typer.Option("--entrypoint", help="Replace the image's entrypoint (split on spaces)."),
]
StopGrace = Annotated[
    str | None,
    typer.Option("--stop-grace-period", metavar="DURATION", help="Wait before killing a task."),
]
StopSignal = Annotated[str | None, typer.Option("--stop-signal", help="Signal that stops a task.")]
MaxPerNode = Annotated[
    int | None, typer.Option("--max-replicas-per-node", min=0, help="At most this many per node.")
]


def _read(flag: str, parse: Callable[[str], T], value: str) -> T:
    try:
        return parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from None


def parse_env(items: list[str], *, flag: str = "--env") -> dict[str, str]:
    """`K=V`; a bare `K` takes K from this shell's environment (docker does the same)."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=flag)
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env


def parse_labels(items: list[str], *, flag: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=flag)
        labels[key.strip()] = value
    return labels


def parse_publish(text: str) -> list[PortConfig]:
    """`8080:80[/udp]`, or docker's long form `published=8080,target=80,mode=host`."""
    try:
        if "=" in text:
            fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
            fields = {key.strip(): value.strip() for key, value in fields.items()}
            unknown = set(fields) - {"published", "target", "protocol", "mode"}
            if unknown:
                raise ValueError(
                    f"unknown field {sorted(unknown)[0]!r}; use published, target, protocol, mode"
                )
            return parse_port(fields).ports
        return parse_port(text).ports
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--publish") from None


def check_constraints(items: list[str], *, flag: str) -> list[str]:
    for text in items:
        try:
            if text.strip().startswith(AFFINITY_PREFIX):
                parse_affinity(text)
            else:
                parse_constraint(text)
        except ConstraintError as exc:
            raise typer.BadParameter(str(exc), param_hint=flag) from None
    return items


def check_preferences(items: list[str], *, flag: str) -> list[str]:
    for text in items:
        try:
            parse_preference(text)
        except ConstraintError as exc:
            raise typer.BadParameter(str(exc), param_hint=flag) from None
    return items


def apply_tuning(spec: dict[str, Any], values: dict[str, Any]) -> None:
    """Set the resource, restart, update and rollback flags that were given."""
    sections = {
        "limit": "limits",
        "reserve": "reservations",
        "restart": "restart_policy",
        "update": "update_config",
        "rollback": "rollback_config",
    }
    readers: dict[str, tuple[str, Callable[[Any], Any]]] = {
        "cpu": ("nano_cpus", units.nano_cpus),
        "memory": ("memory_bytes", units.size),
        "condition": ("condition", str),
        "delay": ("delay", units.duration),
        "max_attempts": ("max_attempts", int),
        "window": ("window", units.duration),
        "parallelism": ("parallelism", int),
        "order": ("order", str),
        "failure_action": ("failure_action", str),
        "monitor": ("monitor", units.duration),
        "max_failure_ratio": ("max_failure_ratio", float),
    }
    for option, value in values.items():
        if value is None:
            continue
        prefix, _, name = option.partition("_")
        field, parse = readers[name]
        flag = "--" + option.replace("_", "-")
        text = value.value if hasattr(value, "value") else value
        spec.setdefault(sections[prefix], {})[field] = _read(flag, parse, text)


def build_spec(fields: dict[str, Any]) -> ServiceSpec:
    """The spec, checked here so that a bad value is a usage error naming its field."""
    try:
        return ServiceSpec.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise typer.BadParameter(f"{where}: {message}" if where else message) from None


# --- create -----------------------------------------------------------------------------


@app.command(
    "create",
    context_settings={"allow_interspersed_args": False},
)
@reported
def create(
    image: Annotated[str, typer.Argument(help="The image to run.")],
    command: Annotated[
        list[str] | None,
        typer.Argument(metavar="[COMMAND [ARG...]]", help="Replaces the image's CMD."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Service name (default: from the image).")
    ] = None,
    mode: Annotated[
        ServiceMode, typer.Option("--mode", help="replicated or global.")
    ] = ServiceMode.REPLICATED,
    replicas: Replicas = None,
    publish: Annotated[
        Texts, typer.Option("--publish", "-p", metavar="PUBLISHED:TARGET", help="Publish a port.")
    ] = [],  # noqa: B006  (typer's default; never mutated)
    env: Annotated[
        Texts, typer.Option("--env", "-e", metavar="KEY=VALUE", help="Set a variable.")
    ] = [],  # noqa: B006
    env_file: Annotated[
        list[Path], typer.Option("--env-file", help="Read variables from a file.")
    ] = [],  # noqa: B006
    label: Annotated[
        Texts, typer.Option("--label", "-l", metavar="KEY=VALUE", help="Service label.")
    ] = [],  # noqa: B006
    container_label: Annotated[
        Texts, typer.Option("--container-label", metavar="KEY=VALUE", help="Container label.")
    ] = [],  # noqa: B006
    constraint: Annotated[
        Texts, typer.Option("--constraint", metavar="EXPR", help="e.g. node.labels.zone==a.")
    ] = [],  # noqa: B006
    placement_pref: Annotated[
        Texts, typer.Option("--placement-pref", metavar="spread=KEY", help="Spread over a label.")
    ] = [],  # noqa: B006
    max_replicas_per_node: MaxPerNode = None,
    limit_cpu: LimitCpu = None,
    limit_memory: LimitMemory = None,
    reserve_cpu: ReserveCpu = None,
    reserve_memory: ReserveMemory = None,
    restart_condition: RestartConditionOpt = None,
    restart_delay: RestartDelay = None,
    restart_max_attempts: RestartMaxAttempts = None,
    restart_window: RestartWindow = None,
    update_parallelism: UpdateParallelism = None,
    update_delay: UpdateDelay = None,
    update_order: UpdateOrderOpt = None,
    update_failure_action: UpdateFailureAction = None,
    update_monitor: UpdateMonitor = None,
    update_max_failure_ratio: UpdateMaxFailureRatio = None,
    rollback_parallelism: RollbackParallelism = None,
    rollback_delay: RollbackDelay = None,
    rollback_order: RollbackOrderOpt = None,
    rollback_failure_action: RollbackFailureAction = None,
    rollback_monitor: RollbackMonitor = None,
    rollback_max_failure_ratio: RollbackMaxFailureRatio = None,
    workdir: Workdir = None,
    user: User = None,
    entrypoint: Entrypoint = None,
    stop_grace_period: StopGrace = None,
    stop_signal: StopSignal = None,
    init: Annotated[bool, typer.Option("--init", help="Run an init process as PID 1.")] = False,
    detach: Detach = False,
    quiet: Quiet = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Create a service: IMAGE [COMMAND...], then wait until its tasks run."""
    if mode is ServiceMode.GLOBAL and replicas is not None:
        raise typer.BadParameter("a global service runs one task per node", param_hint="--replicas")
    variables: dict[str, str] = {}
    for path in env_file:
        try:
            variables.update(read_env_file(path, os.environ))
        except EnvFileError as exc:
            raise typer.BadParameter(str(exc), param_hint="--env-file") from None
    variables.update(parse_env(env))
    fields: dict[str, Any] = {
        "name": name or default_name(image),
        "image": image,
        "mode": mode.value,
        "env": variables,
        "labels": parse_labels(label, flag="--label"),
        "container_labels": parse_labels(container_label, flag="--container-label"),
        "ports": [port.model_dump(mode="json") for text in publish for port in parse_publish(text)],
        "placement": {
            "constraints": check_constraints(constraint, flag="--constraint"),
            "preferences": check_preferences(placement_pref, flag="--placement-pref"),
        },
        "init": init,
    }
    if max_replicas_per_node is not None:
        fields["placement"]["max_replicas_per_node"] = max_replicas_per_node
    if replicas is not None:
        fields["replicas"] = replicas
    if command:
        fields["args"] = command
    if entrypoint:
        fields["command"] = entrypoint.split()
    for key, value in (("workdir", workdir), ("user", user), ("stop_signal", stop_signal)):
        if value:
            fields[key] = value
    if stop_grace_period:
        fields["stop_grace_period"] = _read(
            "--stop-grace-period", units.duration, stop_grace_period
        )
    apply_tuning(fields, tuning(locals()))
    spec = build_spec(fields)
    with session(host, debug) as api:
        created = api.post("/services", spec.model_dump(mode="json"))
        typer.echo(created["id"])
        if not detach:
            wait_converged(api, {spec.name: int(created["spec_version"])}, quiet=quiet)


TUNING = (
    "limit_cpu",
    "limit_memory",
    "reserve_cpu",
    "reserve_memory",
    "restart_condition",
    "restart_delay",
    "restart_max_attempts",
    "restart_window",
    "update_parallelism",
    "update_delay",
    "update_order",
    "update_failure_action",
    "update_monitor",
    "update_max_failure_ratio",
    "rollback_parallelism",
    "rollback_delay",
    "rollback_order",
    "rollback_failure_action",
    "rollback_monitor",
    "rollback_max_failure_ratio",
)


def tuning(values: dict[str, Any]) -> dict[str, Any]:
    return {key: values[key] for key in TUNING}


def default_name(image: str) -> str:
    """`registry:5000/team/web:1.2` -> `web`, as a service name must be plain."""
    path = image.split("@", 1)[0]
    last = path.rsplit("/", 1)[-1]
    base = last.split(":", 1)[0]
    cleaned = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in base).strip("-.")
    return cleaned[:63] or "service"


# --- update -----------------------------------------------------------------------------


@app.command("update")
@reported
def update(
    service: ServiceRef,
    image: Annotated[str | None, typer.Option("--image", help="A new image.")] = None,
    args: Annotated[
        str | None,
        typer.Option("--args", metavar="COMMAND", help="Replace the command (split on spaces)."),
    ] = None,
    replicas: Replicas = None,
    env_add: Annotated[
        Texts, typer.Option("--env-add", metavar="KEY=VALUE", help="Add or set a variable.")
    ] = [],  # noqa: B006
    env_rm: Annotated[
        Texts, typer.Option("--env-rm", metavar="KEY", help="Remove a variable.")
    ] = [],  # noqa: B006
    label_add: Annotated[
        Texts, typer.Option("--label-add", metavar="KEY=VALUE", help="Service label.")
    ] = [],  # noqa: B006
    label_rm: Annotated[
        Texts, typer.Option("--label-rm", metavar="KEY", help="Remove a service label.")
    ] = [],  # noqa: B006
    container_label_add: Annotated[
        Texts, typer.Option("--container-label-add", metavar="KEY=VALUE", help="Container label.")
    ] = [],  # noqa: B006
    container_label_rm: Annotated[
        Texts, typer.Option("--container-label-rm", metavar="KEY", help="Remove a container label.")
    ] = [],  # noqa: B006
    publish_add: Annotated[
        Texts, typer.Option("--publish-add", metavar="PUBLISHED:TARGET", help="Publish a port.")
    ] = [],  # noqa: B006
    publish_rm: Annotated[
        Texts,
        typer.Option("--publish-rm", metavar="PORT", help="Stop publishing a published port."),
    ] = [],  # noqa: B006
    constraint_add: Annotated[
        Texts, typer.Option("--constraint-add", metavar="EXPR", help="Add a constraint.")
    ] = [],  # noqa: B006
    constraint_rm: Annotated[
        Texts, typer.Option("--constraint-rm", metavar="EXPR", help="Remove one.")
    ] = [],  # noqa: B006
    placement_pref_add: Annotated[
        Texts, typer.Option("--placement-pref-add", metavar="spread=KEY", help="Add a preference.")
    ] = [],  # noqa: B006
    placement_pref_rm: Annotated[
        Texts, typer.Option("--placement-pref-rm", metavar="spread=KEY", help="Remove one.")
    ] = [],  # noqa: B006
    max_replicas_per_node: MaxPerNode = None,
    limit_cpu: LimitCpu = None,
    limit_memory: LimitMemory = None,
    reserve_cpu: ReserveCpu = None,
    reserve_memory: ReserveMemory = None,
    restart_condition: RestartConditionOpt = None,
    restart_delay: RestartDelay = None,
    restart_max_attempts: RestartMaxAttempts = None,
    restart_window: RestartWindow = None,
    update_parallelism: UpdateParallelism = None,
    update_delay: UpdateDelay = None,
    update_order: UpdateOrderOpt = None,
    update_failure_action: UpdateFailureAction = None,
    update_monitor: UpdateMonitor = None,
    update_max_failure_ratio: UpdateMaxFailureRatio = None,
    rollback_parallelism: RollbackParallelism = None,
    rollback_delay: RollbackDelay = None,
    rollback_order: RollbackOrderOpt = None,
    rollback_failure_action: RollbackFailureAction = None,
    rollback_monitor: RollbackMonitor = None,
    rollback_max_failure_ratio: RollbackMaxFailureRatio = None,
    workdir: Workdir = None,
    user: User = None,
    entrypoint: Entrypoint = None,
    stop_grace_period: StopGrace = None,
    stop_signal: StopSignal = None,
    detach: Detach = False,
    quiet: Quiet = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Change a service; its tasks are replaced as its update config says."""
    given = {key: value for key, value in locals().items() if key not in _NOT_CHANGES}
    if not any(value for value in given.values() if value is not None):
        raise typer.BadParameter("nothing to change: give at least one flag (see --help)")
    with session(host, debug) as api:
        current = api.get(f"/services/{service}")
        fields: dict[str, Any] = current["spec"]
        _change(fields, given)
        spec = build_spec(fields)
        updated = api.post(
            f"/services/{current['name']}/update",
            spec.model_dump(mode="json"),
            params={"version": str(current["spec_version"])},
        )
        typer.echo(current["id"] if quiet else current["name"])
        if not detach and updated["spec_version"] != current["spec_version"]:
            wait_converged(api, {spec.name: int(updated["spec_version"])}, quiet=quiet)


_NOT_CHANGES = frozenset({"service", "detach", "quiet", "host", "debug"})


def _change(fields: dict[str, Any], given: dict[str, Any]) -> None:
    """Apply `service update`'s flags to a spec (as the API returned it)."""
    if given["image"]:
        fields["image"] = given["image"]
    if given["args"] is not None:
        fields["args"] = given["args"].split() or None
    if given["entrypoint"] is not None:
        fields["command"] = given["entrypoint"].split() or None
    if given["replicas"] is not None:
        if fields.get("mode") == ServiceMode.GLOBAL.value:
            raise typer.BadParameter(
                "a global service runs one task per node", param_hint="--replicas"
            )
        fields["replicas"] = given["replicas"]
    _edit(fields, "env", add=parse_env(given["env_add"], flag="--env-add"), remove=given["env_rm"])
    _edit(
        fields,
        "labels",
        add=parse_labels(given["label_add"], flag="--label-add"),
        remove=given["label_rm"],
    )
    _edit(
        fields,
        "container_labels",
        add=parse_labels(given["container_label_add"], flag="--container-label-add"),
        remove=given["container_label_rm"],
    )
    ports = [p for p in fields.get("ports", []) if not _port_named(p, given["publish_rm"])]
    for text in given["publish_add"]:
        for port in parse_publish(text):
            ports = [
                p
                for p in ports
                if (p.get("published"), p.get("protocol")) != (port.published, port.protocol)
            ]
            ports.append(port.model_dump(mode="json"))
    fields["ports"] = ports
    placement = fields.setdefault("placement", {})
    constraints = [c for c in placement.get("constraints", []) if c not in given["constraint_rm"]]
    for text in check_constraints(given["constraint_add"], flag="--constraint-add"):
        if text not in constraints:
            constraints.append(text)
    placement["constraints"] = constraints
    preferences = [
        p for p in placement.get("preferences", []) if p not in given["placement_pref_rm"]
    ]
    for text in check_preferences(given["placement_pref_add"], flag="--placement-pref-add"):
        if text not in preferences:
            preferences.append(text)
    placement["preferences"] = preferences
    if given["max_replicas_per_node"] is not None:
        placement["max_replicas_per_node"] = given["max_replicas_per_node"]
    for key in ("workdir", "user", "stop_signal"):
        if given[key]:
            fields[key] = given[key]
    if given["stop_grace_period"]:
        fields["stop_grace_period"] = _read(
            "--stop-grace-period", units.duration, given["stop_grace_period"]
        )
    apply_tuning(fields, tuning(given))


def _edit(fields: dict[str, Any], key: str, *, add: dict[str, str], remove: list[str]) -> None:
    values = {k: v for k, v in (fields.get(key) or {}).items() if k not in remove}
    values.update(add)
    fields[key] = values


def _port_named(port: dict[str, Any], names: list[str]) -> bool:
    """`--publish-rm 8080` or `8080/udp` (docker also accepts the target port)."""
    for text in names:
        number, _, protocol = text.partition("/")
        if protocol and protocol != port.get("protocol", "tcp"):
            continue
        if number.isdigit() and int(number) in (port.get("published"), port.get("target")):
            return True
    return False


# --- scale, rollback, rm, logs ----------------------------------------------------------


@app.command("scale")
@reported
def scale(
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="SERVICE=REPLICAS...", help="e.g. web=5.", autocompletion=complete_scale
        ),
    ],
    detach: Detach = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Set the number of tasks of one or more replicated services."""
    wanted: dict[str, int] = {}
    for item in targets:
        name, sep, number = item.rpartition("=")
        if not sep or not name or not number.isdigit():
            raise typer.BadParameter(f"{item!r} is not SERVICE=REPLICAS (e.g. web=5)")
        wanted[name] = int(number)
    versions: dict[str, int] = {}
    failed = False
    with session(host, debug) as api:
        for name, count in wanted.items():
            try:
                scaled = api.post(f"/services/{name}/scale", {"replicas": count})
            except CliError as exc:
                typer.echo(f"shoal: {exc.message}", err=True)
                failed = True
                continue
            typer.echo(f"{scaled['name']} scaled to {count}")
            versions[scaled["name"]] = int(scaled["spec_version"])
        if versions and not detach:
            wait_converged(api, versions)
    if failed:
        raise typer.Exit(1)


@app.command("rollback")
@reported
def rollback(
    service: ServiceRef,
    detach: Detach = False,
    quiet: Quiet = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Go back to the service's previous spec."""
    with session(host, debug) as api:
        rolled = api.post(f"/services/{service}/rollback")
        typer.echo(rolled["id"] if quiet else rolled["name"])
        if not detach:
            wait_converged(api, {rolled["name"]: int(rolled["spec_version"])}, quiet=quiet)


@app.command("rm")
@reported
def remove(
    services: ServiceRefs,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Remove services; their tasks are stopped and removed."""
    with session(host, debug) as api:
        if not remove_services(api, services):
            raise typer.Exit(1)


def remove_services(api: ManagerClient, names: list[str], *, echo: bool = True) -> bool:
    """Delete each service (printing its name if `echo`); False when any failed. A
    failure is reported and the others are still removed, as docker does."""
    ok = True
    for name in names:
        try:
            api.delete(f"/services/{name}")
        except CliError as exc:
            typer.echo(f"shoal: {exc.message}", err=True)
            ok = False
        else:
            if echo:
                typer.echo(name)
    return ok


@app.command("logs")
@reported
def logs(
    service: ServiceRef,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Not available yet: agents do not serve their containers' logs."""
    typer.echo(
        "shoal: service logs is not available yet: shoal agents do not serve container "
        "logs. Find the tasks' nodes and containers with `shoal service ps --no-trunc "
        f"{service}` and run `docker logs CONTAINER` on that node.",
        err=True,
    )
    raise typer.Exit(1)


# --- ls, ps, inspect --------------------------------------------------------------------

SERVICE_HEADERS = ("ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS")
TASK_HEADERS = ("ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR")
ERROR_WIDTH = 40


def format_ports(ports: list[dict[str, Any]]) -> str:
    """`*:8080->80/tcp` for the routing mesh, `8080->80/tcp (host)` for host mode."""
    shown = []
    for port in ports:
        protocol = port.get("protocol", "tcp")
        target = port["target"]
        published = port.get("published")
        if published is None:
            shown.append(f"{target}/{protocol}")
        elif port.get("mode") == "host":
            shown.append(f"{published}->{target}/{protocol} (host)")
        else:
            shown.append(f"*:{published}->{target}/{protocol}")
    return ", ".join(shown)


def service_rows(services: list[dict[str, Any]], *, no_trunc: bool = False) -> list[list[str]]:
    rows = []
    for service in services:
        spec = service["spec"]
        replicas = f"{service['replicas']['running']}/{service['replicas']['desired']}"
        most = spec.get("placement", {}).get("max_replicas_per_node") or 0
        if most and spec["mode"] == ServiceMode.REPLICATED.value:
            replicas += f" (max {most} per node)"
        rows.append(
            [
                output.short_id(service["id"], no_trunc=no_trunc),
                service["name"],
                spec["mode"],
                replicas,
                spec["image"],
                format_ports(spec.get("ports", [])),
            ]
        )
    return rows


def show_services(
    services: list[dict[str, Any]], *, quiet: bool, fmt: output.OutputFormat, no_trunc: bool
) -> None:
    if quiet:
        output.print_ids([output.short_id(s["id"], no_trunc=no_trunc) for s in services])
    elif fmt is output.OutputFormat.JSON:
        output.print_json(services)
    else:
        output.print_table(SERVICE_HEADERS, service_rows(services, no_trunc=no_trunc))


@app.command("ls")
@reported
def list_services(
    quiet: output.QuietOption = False,
    fmt: output.FormatOption = output.OutputFormat.TABLE,
    no_trunc: output.NoTruncOption = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """List services: ID, NAME, MODE, REPLICAS (running/desired), IMAGE, PORTS."""
    with session(host, debug) as api:
        services: list[dict[str, Any]] = api.get("/services")
    show_services(services, quiet=quiet, fmt=fmt, no_trunc=no_trunc)


def task_rows(
    tasks: list[dict[str, Any]],
    *,
    hostnames: dict[str, str],
    now: float | None = None,
    no_trunc: bool = False,
) -> list[list[str]]:
    """Tasks grouped by slot (or node, for global services), newest first in each group;
    older tasks of a slot are shown as ` \\_ name`, as docker does."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for task in tasks:
        slot = task.get("slot")
        key = str(slot) if slot is not None else task.get("node_id", "")
        groups.setdefault((task["service"], key), []).append(task)

    def order(item: tuple[tuple[str, str], list[dict[str, Any]]]) -> tuple[str, int, str]:
        (service, key), _ = item
        return (service, int(key) if key.isdigit() else 0, hostnames.get(key, key))

    rows = []
    for (service, key), members in sorted(groups.items(), key=order):
        members.sort(key=lambda t: (t.get("created") or 0.0, t["id"]), reverse=True)
        for index, task in enumerate(members):
            name = f"{service}.{key}" if key else service
            error = task.get("error") or (task.get("message") if task["state"] == "pending" else "")
            rows.append(
                [
                    output.short_id(task["id"], no_trunc=no_trunc),
                    name if index == 0 else f" \\_ {name}",
                    task.get("image", ""),
                    hostnames.get(task.get("node_id") or "", task.get("node_id") or ""),
                    output.capitalised(task["desired_state"]),
                    " ".join(
                        part
                        for part in (
                            output.capitalised(task["state"]),
                            output.ago(task.get("updated") or task.get("created"), now=now),
                        )
                        if part
                    ),
                    f'"{output.truncate(error, ERROR_WIDTH, no_trunc=no_trunc)}"' if error else "",
                ]
            )
    return rows


def show_tasks(
    api: ManagerClient,
    tasks: list[dict[str, Any]],
    *,
    quiet: bool,
    fmt: output.OutputFormat,
    no_trunc: bool,
) -> None:
    if quiet:
        output.print_ids([output.short_id(t["id"], no_trunc=no_trunc) for t in tasks])
    elif fmt is output.OutputFormat.JSON:
        output.print_json(tasks)
    else:
        hostnames = {node["id"]: node.get("hostname") or node["id"] for node in api.get("/nodes")}
        output.print_table(TASK_HEADERS, task_rows(tasks, hostnames=hostnames, no_trunc=no_trunc))


FilterOption = Annotated[
    list[str],
    typer.Option(
        "--filter",
        "-f",
        metavar="KEY=VALUE",
        help="desired-state=running|shutdown, or node=NODE (repeatable).",
    ),
]


def task_query(filters: list[str]) -> dict[str, str]:
    query: dict[str, str] = {}
    for item in filters:
        key, _, value = item.partition("=")
        if key == "desired-state" and value in ("running", "shutdown"):
            query["desired_state"] = value
        elif key == "node" and value:
            query["node"] = value
        else:
            raise typer.BadParameter(
                f"{item!r}: use desired-state=running, desired-state=shutdown or node=NODE",
                param_hint="--filter",
            )
    return query


@app.command("ps")
@reported
def list_tasks(
    services: ServiceRefs,
    filters: FilterOption = [],  # noqa: B006
    quiet: output.QuietOption = False,
    fmt: output.FormatOption = output.OutputFormat.TABLE,
    no_trunc: output.NoTruncOption = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """List the tasks of services: where each runs, its state, and since when."""
    query = task_query(filters)
    with session(host, debug) as api:
        tasks: list[dict[str, Any]] = []
        for ref in services:
            name = api.get(f"/services/{ref}")["name"]  # a 404 names the unknown service
            tasks.extend(api.get("/tasks", params={"service": name, **query}))
        show_tasks(api, tasks, quiet=quiet, fmt=fmt, no_trunc=no_trunc)


@app.command("inspect")
@reported
def inspect(
    services: ServiceRefs,
    pretty: Annotated[bool, typer.Option("--pretty", help="Human-readable, not JSON.")] = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Show services in detail (JSON, or --pretty)."""
    with session(host, debug) as api:
        found = [api.get(f"/services/{ref}") for ref in services]
    if pretty:
        typer.echo("\n\n".join(pretty_service(service) for service in found))
    else:
        output.print_json(found)


def pretty_service(service: dict[str, Any]) -> str:
    spec = service["spec"]
    lines = [
        f"ID:\t\t{service['id']}",
        f"Name:\t\t{service['name']}",
        f"Version:\t{service['spec_version']}",
    ]
    if spec.get("labels"):
        lines += ["Labels:", *[f" {k}={v}" for k, v in sorted(spec["labels"].items())]]
    if spec["mode"] == ServiceMode.GLOBAL.value:
        lines.append("Service Mode:\tGlobal")
    else:
        lines += ["Service Mode:\tReplicated", f" Replicas:\t{spec['replicas']}"]
    if service.get("update_state"):
        lines += [
            "UpdateStatus:",
            f" State:\t\t{service['update_state']}",
            f" Message:\t{service.get('update_message') or '-'}",
        ]
    placement = spec.get("placement", {})
    lines += [
        "Placement:",
        f" Constraints:\t{placement.get('constraints') or '[]'}",
        f" Preferences:\t{placement.get('preferences') or '[]'}",
    ]
    if placement.get("max_replicas_per_node"):
        lines.append(f" Max Replicas Per Node:\t{placement['max_replicas_per_node']}")
    for title, key in (("UpdateConfig", "update_config"), ("RollbackConfig", "rollback_config")):
        config = spec[key]
        lines += [
            f"{title}:",
            f" Parallelism:\t{config['parallelism']}",
            f" Delay:\t\t{config['delay']:g}s",
            f" On failure:\t{config['failure_action']}",
            f" Monitoring Period: {config['monitor']:g}s",
            f" Max failure ratio: {config['max_failure_ratio']:g}",
            f" Update order:\t{config['order']}",
        ]
    restart = spec["restart_policy"]
    lines += [
        "RestartPolicy:",
        f" Condition:\t{restart['condition']}",
        f" Delay:\t\t{restart['delay']:g}s",
        f" Max attempts:\t{restart['max_attempts']}",
        "ContainerSpec:",
        f" Image:\t\t{spec['image']}",
    ]
    if spec.get("command"):
        lines.append(f" Command:\t{' '.join(spec['command'])}")
    if spec.get("args"):
        lines.append(f" Args:\t\t{' '.join(spec['args'])}")
    if spec.get("env"):
        lines += [" Env:", *[f"  {k}={v}" for k, v in spec["env"].items()]]
    for label, key in (("Dir", "workdir"), ("User", "user")):
        if spec.get(key):
            lines.append(f" {label}:\t\t{spec[key]}")
    lines.append(f" StopGracePeriod: {spec['stop_grace_period']:g}s")
    limits, reservations = spec["limits"], spec["reservations"]
    if any(limits.values()) or any(reservations.values()):
        lines.append("Resources:")
        for title, values in (("Limits", limits), ("Reservations", reservations)):
            if any(values.values()):
                lines.append(f" {title}:")
                if values["nano_cpus"]:
                    lines.append(f"  CPU:\t\t{values['nano_cpus'] / 1e9:g}")
                if values["memory_bytes"]:
                    lines.append(f"  Memory:\t{format_bytes(values['memory_bytes'])}")
    if spec.get("ports"):
        lines.append("Ports:")
        for port in spec["ports"]:
            lines += [
                f" PublishedPort = {port.get('published') or '-'}",
                f"  Protocol = {port.get('protocol', 'tcp')}",
                f"  TargetPort = {port['target']}",
                f"  PublishMode = {port.get('mode', 'ingress')}",
            ]
    return "\n".join(line.expandtabs(8) for line in lines)


# --- waiting for convergence ------------------------------------------------------------

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
