"""What a user sees when something is wrong: one sentence on stderr, the right exit code
(1: the operation failed, 2: the command line is wrong), and never a traceback unless
`--debug` asks for one."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from controlplane.cli import node as node_cli
from tests.cli.conftest import ServedManager, shoal
from tests.harness.process import free_port


def test_manager_down() -> None:
    port = free_port()
    result = shoal("service", "ls", "--host", f"127.0.0.1:{port}")
    assert result.exit_code == 1
    assert result.stderr == (
        f"shoal: cannot reach the manager at http://127.0.0.1:{port}: connection refused; "
        "is `shoal manager` running?\n"
    )
    assert result.stdout == ""


def test_default_host_is_the_cluster_management_port() -> None:
    result = shoal("node", "ls", env={"SHOAL_HOST": ""})
    assert "the manager at http://127.0.0.1:2377" in result.stderr


def test_no_token(served: ServedManager) -> None:
    assert shoal("swarm", "init", "--host", served.url).exit_code == 0
    result = shoal(
        "service", "ls", env={"SHOAL_HOST": served.url, "SHOAL_CONFIG": "/nonexistent/c.json"}
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "shoal: not authorised: set SHOAL_TOKEN to the cluster's API token"
    )


def test_bad_token(cluster: ServedManager) -> None:
    result = shoal("service", "ls", env={"SHOAL_TOKEN": "SHOAL-1-abc-wrong"})
    assert result.exit_code == 1
    assert result.stderr == (
        "shoal: not authorised: set SHOAL_TOKEN; the manager refused the token from "
        "SHOAL_TOKEN (the API token is not valid for this cluster)\n"
    )


def test_unknown_service_and_node(cluster: ServedManager) -> None:
    result = shoal("service", "inspect", "nope")
    assert (result.exit_code, result.stderr) == (1, "shoal: service 'nope' not found\n")
    result = shoal("service", "ps", "nope")
    assert (result.exit_code, result.stderr) == (1, "shoal: service 'nope' not found\n")
    result = shoal("node", "update", "--availability", "drain", "nope")
    assert (result.exit_code, result.stderr) == (1, "shoal: node 'nope' not found\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["service", "create", "--replicas", "many", "busybox"], "Invalid value for '--replicas'"),
        (["service", "create", "--mode", "sometimes", "busybox"], "'sometimes' is not one of"),
        (
            ["service", "create", "--constraint", "node.rol==x", "busybox"],
            "unknown constraint key 'node.rol'",
        ),
        (["service", "create", "--limit-memory", "lots", "busybox"], "'lots' is not a size"),
        (["service", "create", "-p", "80:http", "busybox"], "is not a port mapping"),
        (
            ["service", "create", "--mode", "global", "--replicas", "2", "busybox"],
            "one task per node",
        ),
        (["service", "create", "--update-delay", "10", "busybox"], "needs a unit"),
        (["service", "scale", "web:3"], "is not SERVICE=REPLICAS"),
        (["service", "update", "web"], "nothing to change"),
        (["service", "ps", "--filter", "colour=blue", "web"], "use desired-state=running"),
        (["node", "update", "--availability", "sideways", "n1"], "'sideways' is not one of"),
        (["node", "update", "--label-add", "novalue", "n1"], "'novalue' is not KEY=VALUE"),
        (["stack", "deploy", "-c", "x.yml", "-bad"], "No such option"),
        (["service", "frobnicate"], "No such command"),
    ],
)
def test_usage_errors_exit_2_naming_the_problem(args: list[str], message: str) -> None:
    result = shoal(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_a_refused_field_is_named(cluster: ServedManager) -> None:
    result = shoal("service", "create", "-d", "--name", "bad name", "busybox")
    assert result.exit_code == 2
    assert "name: must start with a letter or digit" in result.stderr


def test_a_conflict_is_the_managers_sentence(cluster: ServedManager) -> None:
    assert shoal("service", "create", "-d", "--name", "web", "busybox").exit_code == 0
    result = shoal("service", "create", "-d", "--name", "web", "busybox")
    assert (result.exit_code, result.stderr) == (1, "shoal: a service named 'web' already exists\n")


def test_no_traceback_unless_debug(cluster: ServedManager, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> list[list[str]]:
        raise RuntimeError("boom")

    monkeypatch.setattr(node_cli, "node_rows", broken)
    result = shoal("node", "ls")
    assert result.exit_code == 1
    assert result.stderr == (
        "shoal: unexpected error: RuntimeError: boom (run again with --debug for the traceback)\n"
    )
    debugged = shoal("node", "ls", "--debug")
    assert isinstance(debugged.exception, RuntimeError)  # raised: python prints the traceback
    assert "debug: GET http" in debugged.stderr  # and each request is logged


@pytest.fixture
def not_a_manager() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_something_else_on_the_port(not_a_manager: str) -> None:
    result = shoal("node", "ls", "--host", not_a_manager)
    assert result.exit_code == 1
    assert result.stderr == (
        f"shoal: {not_a_manager} answered GET /nodes with something that is not JSON: "
        "is it a shoal manager?\n"
    )


def test_help_on_every_command() -> None:
    groups = {
        "swarm": ["init", "join", "join-token", "leave", "info"],
        "node": ["ls", "inspect", "update", "rm"],
        "service": ["create", "ls", "ps", "inspect", "update", "scale", "rollback", "rm", "logs"],
        "stack": ["deploy", "ls", "services", "ps", "rm"],
    }
    for group, commands in groups.items():
        for command in commands:
            result = shoal(group, command, "--help")
            assert result.exit_code == 0, (group, command, result.output)
            assert "Usage: " in result.stdout


def test_host_before_the_command_as_docker_takes_it(cluster: ServedManager) -> None:
    away = f"http://127.0.0.1:{free_port()}"
    listed = shoal("--host", cluster.url, "service", "ls", env={"SHOAL_HOST": away})
    assert listed.exit_code == 0, listed.output  # the flag beats the environment
    own = shoal("-H", away, "service", "ls", "--host", cluster.url)
    assert own.exit_code == 0, own.output  # and the command's own flag beats it
    refused = shoal("--host", away, "node", "ls")
    assert refused.exit_code == 1
    assert f"cannot reach the manager at {away}" in refused.stderr
    assert shoal("service", "ls").exit_code == 0  # the next command is not sent there
