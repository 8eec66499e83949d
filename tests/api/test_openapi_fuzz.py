"""No request the OpenAPI document allows, or nearly allows, makes the API answer 5xx.

schemathesis generates requests for every operation, valid ones (positive) and ones
that break the schema (negative), and checks `not_a_server_error`. They go to a real
`shoal up` (hollow runtime, file store) with a service whose tasks run and a joined node
that never came up, so that both "found" and "not found" paths are taken. `/events`
streams forever and is left out (its parameters are checked in test_events). About 40 s
for both modes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err

from tests.harness.manager import up_process

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 30
SKIPPED_PATHS = {"/events"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, API token) of `shoal up` (hollow runtime, file store): a leader that
    reconciles, a node whose tasks run, a service with two running tasks, and a second
    node that joined and never came up."""
    work = tmp_path_factory.mktemp("fuzz")
    process = up_process(work, "--runtime", "hollow")
    process.start()
    try:
        config = json.loads((work / "config.json").read_text())
        base_url, token = config["host"], config["token"]
        with httpx.Client(
            base_url=base_url, timeout=10, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            client.post(
                "/services", json={"name": "web", "image": "nginx", "replicas": 2}
            ).raise_for_status()
            worker = config["join_tokens"]["worker"]
            join = {"token": worker, "hostname": "h", "addr": "10.0.0.1"}
            client.post("/swarm/join", json=join).raise_for_status()
            deadline = time.monotonic() + 30
            while len(client.get("/tasks", params={"state": "running"}).json()) < 2:
                assert time.monotonic() < deadline, "the service's tasks did not run"
                time.sleep(0.1)
        yield base_url, token
    finally:
        process.stop()


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode))
def test_no_server_errors(served: tuple[str, str], mode: schemathesis.GenerationMode) -> None:
    base_url, token = served
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"the OpenAPI document is invalid: {result.err()}")
            continue
        operation = result.ok()
        if operation.path in SKIPPED_PATHS:
            continue

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case[Any]) -> None:
            follow = str(case.query.get("follow") if case.query else None).lower()
            if case.query and follow in {"true", "1", "yes", "on", "t", "y"}:
                # a followed log stays open by design (as /events): ask for what is there
                case.query["follow"] = False
            response = case.call(
                base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
            case.validate_response(response, checks=[not_a_server_error])

        try:
            check()
        except Unsatisfiable:
            continue  # no parameters to break: nothing negative to send
        except Exception as exc:  # collect every operation's failure, then report all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
