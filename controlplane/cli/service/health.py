"""Docker's healthcheck flags for `service create` and `service update`.

`--health-cmd CMD` runs `CMD` with the container's shell (`["CMD-SHELL", CMD]`, as docker
does); `--health-interval`, `--health-timeout` and `--health-start-period` take docker's
durations (`30s`, `1m30s`, `500ms`); `--health-retries` counts failures in a row;
`--no-healthcheck` disables every healthcheck, the image's own too (`["NONE"]`).

shoal keeps a healthcheck as a whole (its model needs the test), so the timing flags
alone change a healthcheck the service already has, and on a service without one they
need `--health-cmd`: docker would adjust the image's own, which the CLI cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from controlplane.cli.service.flags import read_flag
from controlplane.compose import units
from controlplane.models.service import HealthCheck

HealthCmd = Annotated[
    str | None,
    typer.Option(
        "--health-cmd", metavar="COMMAND", help="Command that checks health (run by the shell)."
    ),
]
HealthInterval = Annotated[
    str | None,
    typer.Option("--health-interval", metavar="DURATION", help="Time between checks (30s)."),
]
HealthTimeout = Annotated[
    str | None,
    typer.Option("--health-timeout", metavar="DURATION", help="Longest a check may run (30s)."),
]
HealthRetries = Annotated[
    int | None,
    typer.Option("--health-retries", min=1, help="Failures in a row that mean unhealthy (3)."),
]
HealthStartPeriod = Annotated[
    str | None,
    typer.Option(
        "--health-start-period",
        metavar="DURATION",
        help="Grace after start: failures then do not count (0s).",
    ),
]
NoHealthcheck = Annotated[
    bool, typer.Option("--no-healthcheck", help="Disable any healthcheck, the image's too.")
]

#: flag -> (field of `HealthCheck`, option name as a command's parameter)
DURATIONS = {
    "--health-interval": ("interval_seconds", "health_interval"),
    "--health-timeout": ("timeout_seconds", "health_timeout"),
    "--health-start-period": ("start_period_seconds", "health_start_period"),
}
FLAG_OF_FIELD = {field: flag for flag, (field, _) in DURATIONS.items()} | {
    "retries": "--health-retries",
    "test": "--health-cmd",
}


@dataclass(frozen=True, slots=True)
class HealthFlags:
    """The healthcheck flags as given on the command line (None: not given)."""

    cmd: str | None = None
    interval: str | None = None
    timeout: str | None = None
    retries: int | None = None
    start_period: str | None = None
    disable: bool = False

    @classmethod
    def of(cls, values: dict[str, Any]) -> HealthFlags:
        """From a command's parameters (`health_cmd`, ..., `no_healthcheck`)."""
        return cls(
            cmd=values["health_cmd"],
            interval=values["health_interval"],
            timeout=values["health_timeout"],
            retries=values["health_retries"],
            start_period=values["health_start_period"],
            disable=values["no_healthcheck"],
        )

    @property
    def timing(self) -> dict[str, str | int]:
        given = {
            "--health-interval": self.interval,
            "--health-timeout": self.timeout,
            "--health-retries": self.retries,
            "--health-start-period": self.start_period,
        }
        return {flag: value for flag, value in given.items() if value is not None}

    @property
    def given(self) -> bool:
        return self.disable or self.cmd is not None or bool(self.timing)


def healthcheck(flags: HealthFlags, current: dict[str, Any] | None) -> dict[str, Any] | None:
    """The service's healthcheck (as JSON) after `flags`, from `current` (None: none set).
    A flag that cannot be used is a usage error naming it."""
    if not flags.given:
        return current
    timing = flags.timing
    if flags.disable:
        if flags.cmd is not None or timing:
            raise typer.BadParameter(
                "conflicts with --health-* options", param_hint="--no-healthcheck"
            )
        return {"test": ["NONE"]}
    base = dict(current) if current and current.get("test") != ["NONE"] else None
    if flags.cmd is not None:
        if not flags.cmd.strip():
            raise typer.BadParameter("give the command to run", param_hint="--health-cmd")
        base = {**(base or {}), "test": ["CMD-SHELL", flags.cmd]}
    if base is None:
        raise typer.BadParameter(
            "the service has no healthcheck to adjust: give --health-cmd too",
            param_hint=next(iter(timing)),
        )
    for flag, (field, _) in DURATIONS.items():
        text = timing.get(flag)
        if text is not None:
            base[field] = read_flag(flag, units.duration, str(text))
    if flags.retries is not None:
        base["retries"] = flags.retries
    try:
        checked = HealthCheck.model_validate(base)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "test"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise typer.BadParameter(message, param_hint=FLAG_OF_FIELD.get(field, field)) from None
    return checked.model_dump(mode="json")


def describe(check: dict[str, Any] | None) -> list[str]:
    """`service inspect --pretty`'s lines for a healthcheck (none when unset)."""
    if check is None:
        return []
    test = check["test"]
    if test[0] == "NONE":
        return ["Healthcheck:\tdisabled"]
    command = test[1] if test[0] == "CMD-SHELL" else " ".join(test[1:])
    return [
        "Healthcheck:",
        f" Test:\t\t{test[0]} {command}",
        f" Interval:\t{check['interval_seconds']:g}s",
        f" Timeout:\t{check['timeout_seconds']:g}s",
        f" Retries:\t{check['retries']}",
        f" Start Period:\t{check['start_period_seconds']:g}s",
    ]
