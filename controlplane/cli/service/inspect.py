"""`shoal service inspect`: JSON, or `--pretty` in docker's layout."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from controlplane.cli import output
from controlplane.cli.client import DebugOption, HostOption, reported, session
from controlplane.cli.service import health
from controlplane.cli.service.names import ServiceRefs
from controlplane.models.service import ServiceMode
from scheduler.units import format_bytes


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
    lines += health.describe(spec.get("healthcheck"))
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
