"""Docker's healthcheck flags on `service create` and `service update`, as the spec the
manager stores, and as `service inspect --pretty` shows it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.cli.conftest import ServedManager, shoal


def healthcheck(name: str) -> Any:
    result = shoal("service", "inspect", name)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)[0]["spec"]["healthcheck"]


def test_create_with_a_healthcheck(cluster: ServedManager) -> None:
    created = shoal(
        "service", "create", "-d", "--name", "web",
        "--health-cmd", "wget -q -O- http://localhost/ || exit 1",
        "--health-interval", "1m30s", "--health-timeout", "500ms",
        "--health-retries", "5", "--health-start-period", "10s",
        "nginx:1.27",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert healthcheck("web") == {
        "test": ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"],
        "interval_seconds": 90.0,
        "timeout_seconds": 0.5,
        "retries": 5,
        "start_period_seconds": 10.0,
    }
    pretty = shoal("service", "inspect", "--pretty", "web").stdout
    assert "Healthcheck:" in pretty
    assert " Test:          CMD-SHELL wget -q -O- http://localhost/ || exit 1" in pretty
    assert " Interval:      90s" in pretty
    assert " Retries:       5" in pretty


def test_without_flags_the_image_decides(cluster: ServedManager) -> None:
    assert shoal("service", "create", "-d", "--name", "web", "nginx:1.27").exit_code == 0
    assert healthcheck("web") is None
    assert "Healthcheck" not in shoal("service", "inspect", "--pretty", "web").stdout


def test_update_adjusts_disables_and_sets_again(cluster: ServedManager) -> None:
    made = shoal("service", "create", "-d", "--name", "web", "--health-cmd", "true", "nginx")
    assert made.exit_code == 0, made.output
    assert healthcheck("web")["interval_seconds"] == 30.0  # docker's default

    timed = shoal("service", "update", "-d", "--health-interval", "5s", "web")
    assert timed.exit_code == 0, timed.output
    assert healthcheck("web")["test"] == ["CMD-SHELL", "true"]  # kept
    assert healthcheck("web")["interval_seconds"] == 5.0

    assert shoal("service", "update", "-d", "--no-healthcheck", "web").exit_code == 0
    assert healthcheck("web") == {
        "test": ["NONE"],
        "interval_seconds": 30.0,
        "timeout_seconds": 30.0,
        "retries": 3,
        "start_period_seconds": 0.0,
    }
    assert "Healthcheck:    disabled" in shoal("service", "inspect", "--pretty", "web").stdout

    again = shoal("service", "update", "-d", "--health-cmd", "test -e /ok", "web")
    assert again.exit_code == 0, again.output
    assert healthcheck("web")["test"] == ["CMD-SHELL", "test -e /ok"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--health-cmd", "true", "--health-interval", "soon"], "--health-interval"),
        (["--health-cmd", "true", "--health-timeout", "30"], "--health-timeout"),
        (["--health-cmd", "true", "--health-interval", "0s"], "--health-interval"),
        (["--health-cmd", "true", "--health-retries", "0"], "--health-retries"),
        (["--health-cmd", "true", "--no-healthcheck"], "--no-healthcheck"),
        (["--health-cmd", " "], "--health-cmd"),
        (["--health-retries", "2"], "give --health-cmd too"),
    ],
)
def test_a_bad_health_flag_is_a_usage_error_naming_it(
    cluster: ServedManager, flags: list[str], message: str
) -> None:
    result = shoal("service", "create", "-d", "--name", "web", *flags, "nginx")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert shoal("service", "ls", "-q").stdout == ""  # nothing was written
