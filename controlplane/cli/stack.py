"""`shoal stack`: deploy compose files as services, list, inspect and remove stacks.

A stack is the services whose spec names it (`stack`, and the label
`com.docker.stack.namespace`), named `<stack>_<service>`:

- `deploy` converts the files here (`controlplane.compose`: every error with its file
  and line, before anything is sent; `env_file` and `${VAR}` read this machine's files
  and environment), then sends every service in one `POST /stacks`: the manager creates,
  updates and (with `--prune`) removes them in one transaction, so a deploy is written
  whole or not at all. An unchanged service is not touched, so re-deploying an edited
  file replaces only what the edit changed; services no longer in the file stay unless
  `--prune`. A mode change, the one refusal a valid file can meet, is explained before
  anything is sent.
- `ls`, `services`, `ps` and `rm` filter services by their stack.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
from controlplane.cli.service.converge import wait_converged
from controlplane.cli.service.lifecycle import remove_services
from controlplane.cli.service.listing import show_services
from controlplane.cli.service.tasks import FilterOption, show_service_tasks, task_query

if TYPE_CHECKING:
    from controlplane.models import ServiceSpec

app = typer.Typer(
    name="stack", help="Deploy and manage stacks (compose files).", no_args_is_help=True
)


def complete_stacks(incomplete: str) -> list[str]:
    """Stack names for the shell, asked from the manager."""
    stacks = {s["spec"].get("stack") for s in completion_get("/services") or []}
    return sorted(name for name in stacks if name and name.startswith(incomplete))


StackName = Annotated[
    str, typer.Argument(metavar="STACK", help="The stack's name.", autocompletion=complete_stacks)
]


def stack_services(api: ManagerClient, stack: str) -> list[dict[str, Any]]:
    services: list[dict[str, Any]] = api.get("/services", params={"stack": stack})
    if not services:
        raise CliError(f"nothing found in stack {stack!r}")
    return services


@app.command("deploy")
@reported
def deploy(
    stack: StackName,
    compose_file: Annotated[
        list[str],
        typer.Option(
            "--compose-file",
            "-c",
            metavar="FILE",
            help="A compose file (repeat to merge several, later ones win; - for stdin).",
        ),
    ],
    prune: Annotated[
        bool, typer.Option("--prune", help="Remove the stack's services not in the files.")
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Do not wait for the services to converge.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Create or update a stack's services from compose files; wait until they converge."""
    from controlplane.compose import ComposeError, ComposeFile, check_stack_name, load_stack

    try:
        check_stack_name(stack)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="STACK") from None
    try:
        files = [
            ComposeFile(name="-", text=sys.stdin.read()) if name == "-" else ComposeFile.read(name)
            for name in compose_file
        ]
        first = next((Path(name) for name in compose_file if name != "-"), Path("x"))
        loaded = load_stack(files, name=stack, environ=os.environ, workdir=first.parent)
    except ComposeError as exc:
        for problem in exc.problems:
            typer.echo(f"shoal: {problem}", err=True)
        raise typer.Exit(1) from None
    for warning in loaded.warnings:
        typer.echo(f"warning: {warning}", err=True)
    with session(host, debug) as api:
        existing = {s["name"]: s for s in api.get("/services")}
        _check_modes(loaded.services, existing)
        changed = _deploy(api, stack, loaded.services, prune=prune)
        if changed and not detach:
            wait_converged(api, changed, quiet=quiet)


def _deploy(
    api: ManagerClient, stack: str, specs: list[ServiceSpec], *, prune: bool
) -> dict[str, int]:
    """`POST /stacks`: every service written in one transaction, or none. Prints what
    was done, as docker does; returns the spec version of each service that changed."""
    body = {
        "name": stack,
        "services": [spec.model_dump(mode="json") for spec in specs],
        "prune": prune,
    }
    deployed = api.post("/stacks", body)
    created, updated = set(deployed["created"]), set(deployed["updated"])
    for spec in specs:
        if spec.name in created:
            typer.echo(f"Creating service {spec.name}")
        elif spec.name in updated:
            typer.echo(f"Updating service {spec.name}")
        else:
            typer.echo(f"Service {spec.name} is unchanged")
    for name in sorted(deployed["removed"]):
        typer.echo(f"Removing service {name}")
    versions = {s["name"]: int(s["spec_version"]) for s in api.get("/services")}
    return {name: versions[name] for name in created | updated if name in versions}


def _check_modes(specs: list[ServiceSpec], existing: dict[str, dict[str, Any]]) -> None:
    """Refuse, before writing anything, a file that changes a service's mode."""
    problems = []
    for spec in specs:
        current = existing.get(spec.name)
        if current is not None and current["spec"]["mode"] != spec.mode.value:
            problems.append(
                f"service {spec.name} is {current['spec']['mode']} and the file makes it "
                f"{spec.mode.value}: a mode cannot change; remove the service first "
                f"(shoal service rm {spec.name})"
            )
    if problems:
        raise CliError("\n".join(problems))


@app.command("ls")
@reported
def list_stacks(
    fmt: output.FormatOption = output.OutputFormat.TABLE,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """List stacks and how many services each has."""
    with session(host, debug) as api:
        services: list[dict[str, Any]] = api.get("/services")
    counts = Counter(s["spec"]["stack"] for s in services if s["spec"].get("stack"))
    stacks = [{"name": name, "services": counts[name]} for name in sorted(counts)]
    if fmt is output.OutputFormat.JSON:
        output.print_json(stacks)
    else:
        output.print_table(("NAME", "SERVICES"), [[s["name"], str(s["services"])] for s in stacks])


@app.command("services")
@reported
def list_stack_services(
    stack: StackName,
    quiet: output.QuietOption = False,
    fmt: output.FormatOption = output.OutputFormat.TABLE,
    no_trunc: output.NoTruncOption = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """List a stack's services."""
    with session(host, debug) as api:
        services = stack_services(api, stack)
    show_services(services, quiet=quiet, fmt=fmt, no_trunc=no_trunc)


@app.command("ps")
@reported
def list_stack_tasks(
    stack: StackName,
    filters: FilterOption = [],  # noqa: B006  (typer's default; never mutated)
    quiet: output.QuietOption = False,
    fmt: output.FormatOption = output.OutputFormat.TABLE,
    no_trunc: output.NoTruncOption = False,
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """List the tasks of a stack's services."""
    query = task_query(filters)
    with session(host, debug) as api:
        names = [service["name"] for service in stack_services(api, stack)]
        show_service_tasks(api, names, query=query, quiet=quiet, fmt=fmt, no_trunc=no_trunc)


@app.command("rm")
@reported
def remove_stacks(
    stacks: Annotated[
        list[str],
        typer.Argument(metavar="STACK...", help="Stack names.", autocompletion=complete_stacks),
    ],
    host: HostOption = None,
    debug: DebugOption = False,
) -> None:
    """Remove stacks: every service of each."""
    ok = True
    with session(host, debug) as api:
        for stack in stacks:
            try:
                names = sorted(s["name"] for s in stack_services(api, stack))
            except CliError as exc:
                typer.echo(f"shoal: {exc.message}", err=True)
                ok = False
                continue
            for name in names:
                typer.echo(f"Removing service {name}")
            ok = remove_services(api, names, echo=False) and ok
    if not ok:
        raise typer.Exit(1)
