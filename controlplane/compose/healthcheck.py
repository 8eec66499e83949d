"""Compose's `healthcheck` as the service spec's `HealthCheck`, the way a stack deploy reads it.

`test` as a string is a shell line (`CMD-SHELL`); as a list it is taken as written
(`["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`). `disable: true` is `["NONE"]`:
it turns off the image's own healthcheck, so `test` next to it is a contradiction and
refused. Durations are compose durations; `0` (and `retries: 0`) means "Docker's
default", as it does for the engine. Compose may also tune only the timings of the
image's own check (no `test`): shoal keeps a whole check or none, so that is refused
with a hint rather than dropped. `start_interval` needs Docker API 1.44, newer than the
engines shoal targets: a warning, ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from controlplane.compose import units
from controlplane.compose.problems import Path
from controlplane.compose.source import Mapping as Located
from controlplane.models import HealthCheck

Report = Callable[[Path, str], None]

KEY: Path = ("healthcheck",)

#: Compose key -> HealthCheck field, for the durations.
_DURATIONS = {
    "interval": "interval_seconds",
    "timeout": "timeout_seconds",
    "start_period": "start_period_seconds",
}
_FIELD_KEYS = {**{field: key for key, field in _DURATIONS.items()}, "retries": "retries"}


def read_healthcheck(raw: Any, *, error: Report, warn: Report) -> HealthCheck | None:
    """The check `raw` declares, or None (the image's own) with any problem reported."""
    if not isinstance(raw, Located):
        return None
    failures: list[str] = []

    def fail(sub: Path, message: str) -> None:
        failures.append(message)
        error((*KEY, *sub), message)

    disabled = _disabled(raw, fail)
    if failures:
        return None
    if disabled and raw.get("test") is not None:
        fail(("test",), "a disabled healthcheck cannot have a `test`; remove one of the two")
        return None
    if disabled:
        return HealthCheck(test=["NONE"])
    if "start_interval" in raw:
        warn(
            (*KEY, "start_interval"),
            "not supported yet, ignored: it needs Docker API 1.44; checks run every `interval`",
        )
    if raw.get("test") is None:
        fail(
            (),
            "needs a `test`: shoal sets a whole healthcheck, not only the timings of the "
            "image's own (copy the image's test here, or remove `healthcheck`)",
        )
        return None
    fields: dict[str, Any] = {"test": _test(raw["test"], fail)}
    for key, field in _DURATIONS.items():
        if raw.get(key) is not None:
            seconds = _read((key,), units.duration, raw[key], fail)
            if seconds:
                fields[field] = seconds
    if raw.get("retries") is not None:
        retries = _read(("retries",), units.integer, raw["retries"], fail)
        if retries:
            fields["retries"] = retries
    if failures or fields["test"] is None:
        return None
    try:
        return HealthCheck.model_validate(fields)
    except ValidationError as exc:
        for problem in exc.errors():
            loc = problem["loc"]
            key = _FIELD_KEYS.get(str(loc[0]), "test") if loc else "test"
            error((*KEY, key), str(problem["msg"]).removeprefix("Value error, "))
        return None


def _disabled(raw: Located, fail: Report) -> bool:
    if raw.get("disable") is None:
        return False
    return bool(_read(("disable",), units.boolean, raw["disable"], fail))


def _test(value: Any, fail: Report) -> list[str] | None:
    if isinstance(value, str):
        if not value.strip():
            fail(("test",), "an empty test; write the shell command to run, or `disable: true`")
            return None
        return ["CMD-SHELL", value]
    return [str(part) for part in value]


def _read(sub: Path, parse: Callable[[Any], Any], value: Any, fail: Report) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        fail(sub, str(exc))
        return None
