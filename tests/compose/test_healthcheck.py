"""Compose `healthcheck` as a stack deploy reads it: forms of `test`, durations, disable, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controlplane.compose import ComposeError, ComposeFile, Stack, load_stack
from controlplane.models import HealthCheck

HERE = Path(".")
HEAD = "services:\n  web:\n    image: busybox\n    healthcheck:\n"


def load(text: str) -> Stack:
    return load_stack([ComposeFile(name="s.yml", text=text)], name="app", environ={}, workdir=HERE)


def healthcheck(body: str) -> HealthCheck | None:
    (spec,) = load(HEAD + body).services
    return spec.healthcheck


def refused(body: str) -> list[str]:
    with pytest.raises(ComposeError) as error:
        healthcheck(body)
    return str(error.value).splitlines()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '      test: "curl -f http://localhost/ || exit 1"\n',
            {"test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]},
        ),
        (
            '      test: ["CMD", "wget", "-q", "http://localhost/"]\n',
            {"test": ["CMD", "wget", "-q", "http://localhost/"]},
        ),
        ('      test: ["CMD-SHELL", "test -e /ok"]\n', {"test": ["CMD-SHELL", "test -e /ok"]}),
        ('      test: ["NONE"]\n', {"test": ["NONE"]}),
        ("      disable: true\n", {"test": ["NONE"]}),
        (
            "      test: test -e /ok\n      interval: 500ms\n      timeout: 2s\n"
            "      retries: 2\n      start_period: 1m30s\n",
            {
                "test": ["CMD-SHELL", "test -e /ok"],
                "interval_seconds": 0.5,
                "timeout_seconds": 2.0,
                "retries": 2,
                "start_period_seconds": 90.0,
            },
        ),
        # 0 is "Docker's default", as for the engine
        ("      test: ok\n      interval: 0s\n      retries: 0\n", {"test": ["CMD-SHELL", "ok"]}),
        ('      test: ok\n      retries: "5"\n', {"test": ["CMD-SHELL", "ok"], "retries": 5}),
    ],
)
def test_healthcheck_forms(body: str, expected: dict[str, Any]) -> None:
    check = healthcheck(body)
    assert check is not None
    assert check.model_dump(exclude_defaults=True) == expected


def test_disable_false_with_a_test_keeps_the_test() -> None:
    check = healthcheck("      disable: false\n      test: ok\n")
    assert check is not None
    assert check.test == ["CMD-SHELL", "ok"]


@pytest.mark.parametrize(
    ("body", "line", "key", "message"),
    [
        ('  test: ok\n  interval: "5"\n', 6, ".interval", "'5' needs a unit"),
        ("  test: ok\n  timeout: soon\n", 6, ".timeout", "'soon' is not a duration"),
        ("  test: ok\n  start_period: 1x\n", 6, ".start_period", "'1x' is not a duration"),
        ("  test: ok\n  retries: many\n", 6, ".retries", "'many' is not an integer"),
        ("  test: ok\n  retries: -1\n", 6, ".retries", "-1 is less than 0"),
        ("  test: ok\n  interval: 1us\n", 6, ".interval", "greater than or equal to 0.001"),
        ('  test: ["RUN", "x"]\n', 5, ".test", "start with CMD, CMD-SHELL or NONE, not 'RUN'"),
        ('  test: ["CMD-SHELL"]\n', 5, ".test", "exactly one non-empty shell command"),
        ('  test: ["NONE", "x"]\n', 5, ".test", "takes no arguments"),
        ('  test: ""\n', 5, ".test", "an empty test"),
        ("  disable: true\n  test: ok\n", 6, ".test", "cannot have a `test`"),
        ("  disable: maybe\n", 5, ".disable", "'maybe' is not true or false"),
        ("  interval: 5s\n", 4, "", "needs a `test`"),
    ],
)
def test_bad_healthchecks_name_file_line_and_key(
    body: str, line: int, key: str, message: str
) -> None:
    indented = "".join(f"    {row}\n" for row in body.splitlines())
    (error,) = refused(indented)
    assert error.startswith(f"s.yml:{line}: services.web.healthcheck{key}: ")
    assert message in error


def test_start_interval_is_a_warning() -> None:
    stack = load(HEAD + "      test: ok\n      start_interval: 1s\n")
    assert [str(w).split(": ")[:2] for w in stack.warnings] == [
        ["s.yml:6", "services.web.healthcheck.start_interval"]
    ]
    assert stack.services[0].healthcheck == HealthCheck(test=["CMD-SHELL", "ok"])


def test_a_later_file_replaces_the_test() -> None:
    base = (
        "services:\n  web:\n    image: busybox\n    healthcheck:\n"
        '      test: ["CMD", "a", "b"]\n      retries: 4\n'
    )
    override = 'services:\n  web:\n    healthcheck:\n      test: ["CMD", "c"]\n'
    files = [ComposeFile(name="a.yml", text=base), ComposeFile(name="b.yml", text=override)]
    (spec,) = load_stack(files, name="app", environ={}, workdir=Path(".")).services
    assert spec.healthcheck == HealthCheck(test=["CMD", "c"], retries=4)
