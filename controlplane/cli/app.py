"""The command tree: one typer app, each group from its own module."""

from __future__ import annotations

import typer

from controlplane.cli import agent, manager, node, service, stack, swarm, up
from controlplane.cli.client import root_host, root_tls
from controlplane.tls import TlsFiles
from controlplane.version import __version__

app = typer.Typer(
    name="shoal",
    help="shoal: run Docker on many hosts as one cluster.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"shoal {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    context: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    host: str | None = typer.Option(
        None,
        "--host",
        "-H",
        metavar="URL",
        help="The manager to talk to, for any command (as `docker -H`); "
        "a command's own --host wins.",
    ),
    tlscacert: str | None = typer.Option(
        None,
        "--tlscacert",
        metavar="FILE",
        help="Trust an https:// manager signed by this CA (env SHOAL_TLS_CACERT).",
    ),
    tlscert: str | None = typer.Option(
        None,
        "--tlscert",
        metavar="FILE",
        help="Client certificate, for a manager that asks for one (env SHOAL_TLS_CERT).",
    ),
    tlskey: str | None = typer.Option(
        None, "--tlskey", metavar="FILE", help="The key of --tlscert (env SHOAL_TLS_KEY)."
    ),
) -> None:
    """shoal: run Docker on many hosts as one cluster."""
    if host:
        token = root_host.set(host)
        context.call_on_close(lambda: root_host.reset(token))
    if tlscacert or tlscert or tlskey:
        files = root_tls.set(TlsFiles(cert=tlscert, key=tlskey, cacert=tlscacert))
        context.call_on_close(lambda: root_tls.reset(files))


app.command("agent")(agent.agent)
app.command("manager")(manager.manager)
app.command("up")(up.up)
app.add_typer(swarm.app)
app.add_typer(node.app)
app.add_typer(service.app)
app.add_typer(stack.app)


def main() -> None:
    app()
