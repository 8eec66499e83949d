"""`shoal service update`: a spec changed flag by flag, written with its version."""

from __future__ import annotations

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
from controlplane.cli.service.lifecycle import roll_back
from controlplane.cli.service.names import ServiceRef
from controlplane.compose import units
from controlplane.models.service import ServiceMode


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
    health_cmd: HealthCmd = None,
    health_interval: HealthInterval = None,
    health_timeout: HealthTimeout = None,
    health_retries: HealthRetries = None,
    health_start_period: HealthStartPeriod = None,
    no_healthcheck: NoHealthcheck = False,
    rollback: Annotated[
        bool,
        typer.Option("--rollback", help="Go back to the previous spec (as `service rollback`)."),
    ] = False,
    detach: Detach = False,
    quiet: Quiet = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Change a service; its tasks are replaced as its update config says."""
    given = {key: value for key, value in locals().items() if key not in _NOT_CHANGES}
    changes = any(value for value in given.values() if value is not None)
    if rollback:
        if changes:
            raise typer.BadParameter("other flags may not be combined with --rollback")
        with session(host, debug) as api:
            roll_back(api, service, detach=detach, quiet=quiet)
        return
    if not changes:
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


_NOT_CHANGES = frozenset({"service", "rollback", "detach", "quiet", "host", "debug"})


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
        fields["stop_grace_period"] = read_flag(
            "--stop-grace-period", units.duration, given["stop_grace_period"]
        )
    apply_tuning(fields, tuning(given))
    fields["healthcheck"] = healthcheck(HealthFlags.of(given), fields.get("healthcheck"))


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
