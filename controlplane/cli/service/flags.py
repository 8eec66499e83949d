"""Flags shared by `service create` and `service update`, and how their values are read.

Values are read by the same parsers as compose files (`controlplane.compose`), so
`8080:80/udp` or `1m30s` mean the same in both; a value that cannot be read is a usage
error (exit 2) naming the flag."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from controlplane.compose import units
from controlplane.compose.ports import parse_port
from controlplane.models import PortConfig, ServiceSpec
from controlplane.models.service import FailureAction, RestartCondition, UpdateOrder
from scheduler.constraints import (
    AFFINITY_PREFIX,
    ConstraintError,
    parse_affinity,
    parse_constraint,
    parse_preference,
)

T = TypeVar("T")


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


def read_flag(flag: str, parse: Callable[[str], T], value: str) -> T:
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
        spec.setdefault(sections[prefix], {})[field] = read_flag(flag, parse, text)


def build_spec(fields: dict[str, Any]) -> ServiceSpec:
    """The spec, checked here so that a bad value is a usage error naming its field."""
    try:
        return ServiceSpec.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise typer.BadParameter(f"{where}: {message}" if where else message) from None


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
