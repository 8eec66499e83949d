"""`shoal service logs`: docker's prefix, stdout and stderr kept apart, a node's failure a
warning, and the manager's refusals in words.

Printing is checked against a stub manager (`httpx.MockTransport`) answering what the
route's contract says, so every kind of object is covered; the real route is checked
here for its refusals, and with real containers in `test_walkthrough.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from controlplane.cli.client import ManagerClient, resolve_target
from controlplane.cli.service import logs as logs_cli
from tests.cli.conftest import ServedManager, shoal

LINES: list[dict[str, Any]] = [
    {
        "task_id": "0f3c9a8b2d1e4f5a6b7c8d9e0", "service": "web", "slot": 1, "node_id": "n1",
        "node": "alpha", "stream": "stdout", "line": "GET / 200", "time": None,
    },
    {"task_id": "7a7a7a7a7a7a7a7a", "node_id": "n2", "error": "node n2 is down"},
    {
        "task_id": "5e5e5e5e5e5e5e5e5e", "service": "web", "slot": 2, "node_id": "n3",
        "node": "gamma", "stream": "stderr", "line": "oops", "time": None,
    },
]  # fmt: skip


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[httpx.Request]]:
    """Make `service logs` talk to a stub that knows service `web` and answers its logs
    with `status` and `body`; the log requests it was sent."""

    def install(*, status: int = 200, body: str = "") -> list[httpx.Request]:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/services/web":
                return httpx.Response(200, json={"name": "web"})
            seen.append(request)
            return httpx.Response(
                status, text=body, headers={"content-type": "application/x-ndjson"}
            )

        @contextmanager
        def session(host: str | None, debug: bool) -> Iterator[ManagerClient]:
            client = ManagerClient(resolve_target(host), transport=httpx.MockTransport(handler))
            try:
                yield client
            finally:
                client.close()

        monkeypatch.setattr(logs_cli, "session", session)
        return seen

    return install


def ndjson(items: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(item) + "\n" for item in items)


def test_lines_are_prefixed_like_docker_and_streams_kept_apart(
    stub: Callable[..., list[httpx.Request]],
) -> None:
    seen = stub(body=ndjson(LINES))
    result = shoal("service", "logs", "--tail", "5", "-t", "web")
    assert result.exit_code == 0, result.output
    assert result.stdout == "web.1.0f3c9a8b2d1e@alpha    | GET / 200\n"
    assert result.stderr == (
        "warning: no logs of task 7a7a7a7a7a7a from n2: node n2 is down\n"
        "web.2.5e5e5e5e5e5e@gamma    | oops\n"
    )
    (request,) = seen
    assert request.url.path == "/services/web/logs"
    assert dict(request.url.params) == {"tail": "5", "timestamps": "true", "follow": "false"}


def test_no_task_ids_no_trunc_timestamps_and_global_tasks() -> None:
    line = {**LINES[0], "time": "2026-11-26T09:00:00.5Z"}
    assert logs_cli.format_line(line, task_ids=False) == (
        "2026-11-26T09:00:00.5Z web.1@alpha    | GET / 200"
    )
    assert logs_cli.format_line(line, no_trunc=True).endswith(
        "web.1.0f3c9a8b2d1e4f5a6b7c8d9e0@alpha    | GET / 200"
    )
    global_task = {**LINES[0], "slot": None, "node_id": "n1"}
    assert logs_cli.format_line(global_task).startswith("web.n1.0f3c9a8b2d1e@alpha ")


def test_a_manager_without_the_route_says_so(stub: Callable[..., list[httpx.Request]]) -> None:
    stub(status=404, body=json.dumps({"detail": "Not Found"}))
    result = shoal("service", "logs", "web")
    assert result.exit_code == 1
    assert "does not serve logs" in result.stderr
    assert "Traceback" not in result.output


def test_an_unknown_service_is_named(cluster: ServedManager) -> None:
    result = shoal("service", "logs", "nope")
    assert (result.exit_code, result.stderr) == (1, "shoal: service 'nope' not found\n")


def test_a_bad_tail_is_a_usage_error() -> None:
    result = shoal("service", "logs", "--tail", "lots", "web")
    assert result.exit_code == 2
    assert "--tail" in result.output


def test_a_garbled_answer_is_reported_not_a_traceback(
    stub: Callable[..., list[httpx.Request]],
) -> None:
    stub(body=ndjson(LINES[:1]) + "<html>oops</html>\n")
    result = shoal("service", "logs", "web")
    assert result.exit_code == 1
    assert result.stdout == "web.1.0f3c9a8b2d1e@alpha    | GET / 200\n"  # what came first
    assert "not a JSON object: '<html>oops</html>'" in result.stderr
