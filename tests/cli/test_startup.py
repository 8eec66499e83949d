"""Light commands start light: `shoal --help`, `shoal agent --help` and `shoal node ls`
do not import the manager, FastAPI or uvicorn (about a second of start-up on this
machine); those are imported when `shoal manager`, `shoal up` or `shoal agent` run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.cli import manager as manager_cli
from tests.harness.process import free_port

REPO = Path(__file__).parents[2]
HEAVY = ("fastapi", "uvicorn", "starlette", "controlplane.manager", "controlplane.agent.agent")

SCRIPT = """
import json, sys
from controlplane.cli.app import app
try:
    app(sys.argv[1:], prog_name="shoal")
except SystemExit as exit:
    code = exit.code
print(json.dumps({"exit": code, "heavy": [m for m in HEAVY if m in sys.modules]}))
"""


def modules_after(*args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{SCRIPT}", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={
            "PYTHONPATH": str(REPO),
            "SHOAL_HOST": f"127.0.0.1:{free_port()}",
            "SHOAL_CONFIG": os.environ["SHOAL_CONFIG"],  # this test's own (tests/cli/conftest)
        },
        timeout=120,
        check=False,
    )
    lines = result.stdout.splitlines()
    assert lines, f"shoal {' '.join(args)} printed nothing:\n{result.stderr}"
    found: dict[str, object] = json.loads(lines[-1])
    return found


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--help"], 0),
        (["agent", "--help"], 0),
        (["manager", "--help"], 0),
        (["up", "--help"], 0),
        (["node", "ls"], 1),  # no manager there: the command ran and failed
        (["service", "ps", "web"], 1),
    ],
)
def test_light_commands_do_not_import_the_manager(args: list[str], code: int) -> None:
    assert modules_after(*args) == {"exit": code, "heavy": []}


def test_the_manager_help_shows_the_managers_own_defaults() -> None:
    from controlplane.manager import config

    assert manager_cli.DEFAULT_LISTEN == config.DEFAULT_LISTEN
    assert manager_cli.DEFAULT_LEASE_TTL == config.DEFAULT_LEASE_TTL
