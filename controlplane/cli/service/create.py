"""`shoal service create`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from controlplane.cli.client import DebugOption, HostOption, reported, session
from controlplane.cli.service.converge import wait_converged
from controlplane.cli.service.flags import (
    Detach,
    Entrypoint,
    LimitCpu,
    LimitMemory,
    MaxPerNode,
    Quiet,
    Replicas,
    ReserveCpu,
    ReserveMemory,
    RestartConditionOpt,
    RestartDelay,
    RestartMaxAttempts,
    RestartWindow,
    RollbackDelay,
    RollbackFailureAction,
    RollbackMaxFailureRatio,
    RollbackMonitor,
    RollbackOrderOpt,
    RollbackParallelism,
    StopGrace,
    StopSignal,
    Texts,
    UpdateDelay,
    UpdateFailureAction,
    UpdateMaxFailureRatio,
    UpdateMonitor,
    UpdateOrderOpt,
    UpdateParallelism,
    User,
    Workdir,
    apply_tuning,
    build_spec,
    check_constraints,
    check_preferences,
    parse_env,
    parse_labels,
    parse_publish,
    read_flag,
    tuning,
)
from controlplane.cli.service.health import (
    HealthCmd,
    HealthFlags,
    HealthInterval,
    HealthRetries,
    HealthStartPeriod,
    HealthTimeout,
    NoHealthcheck,
    healthcheck,
)
from controlplane.compose import units
from controlplane.compose.envfile import EnvFileError, read_env_file
from controlplane.models.service import ServiceMode


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
    health_cmd: HealthCmd = None,
    health_interval: HealthInterval = None,
    health_timeout: HealthTimeout = None,
    health_retries: HealthRetries = None,
    health_start_period: HealthStartPeriod = None,
    no_healthcheck: NoHealthcheck = False,
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
        fields["stop_grace_period"] = read_flag(
            "--stop-grace-period", units.duration, stop_grace_period
        )
    apply_tuning(fields, tuning(locals()))
    fields["healthcheck"] = healthcheck(HealthFlags.of(locals()), None)
    spec = build_spec(fields)
    with session(host, debug) as api:
        created = api.post("/services", spec.model_dump(mode="json"))
        typer.echo(created["id"])
        if not detach:
            wait_converged(api, {spec.name: int(created["spec_version"])}, quiet=quiet)


def default_name(image: str) -> str:
    """`registry:5000/team/web:1.2` -> `web`, as a service name must be plain."""
    path = image.split("@", 1)[0]
    last = path.rsplit("/", 1)[-1]
    base = last.split(":", 1)[0]
    cleaned = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in base).strip("-.")
    return cleaned[:63] or "service"
