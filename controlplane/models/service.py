"""The service spec: the desired state users declare (`services/<name>`).

Field names follow swarm mode's vocabulary so that a docker user recognises them;
defaults are swarm mode's (restart any after 5 s; update one at a time, stop-first,
pause on failure). Validation here is what makes bad input a 422 naming the field.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from controlplane.models.base import Document

SERVICE_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceMode(StrEnum):
    REPLICATED = "replicated"
    GLOBAL = "global"


class PublishMode(StrEnum):
    INGRESS = "ingress"  # every node answers on the published port (routing mesh)
    HOST = "host"  # only nodes running a task answer, on the task's own port


class PortConfig(Strict):
    target: int = Field(ge=1, le=65535)
    published: int | None = Field(default=None, ge=1, le=65535)
    protocol: str = Field(default="tcp", pattern="^(tcp|udp)$")
    mode: PublishMode = PublishMode.INGRESS


class ResourceSpec(Strict):
    nano_cpus: int = Field(default=0, ge=0)
    memory_bytes: int = Field(default=0, ge=0)


class RestartCondition(StrEnum):
    ANY = "any"
    ON_FAILURE = "on-failure"
    NONE = "none"


class RestartPolicy(Strict):
    condition: RestartCondition = RestartCondition.ANY
    delay: float = Field(default=5.0, ge=0)
    max_attempts: int = Field(default=0, ge=0)  # 0: unlimited
    window: float = Field(default=0.0, ge=0)  # 0: attempts counted forever


class UpdateOrder(StrEnum):
    STOP_FIRST = "stop-first"
    START_FIRST = "start-first"


class FailureAction(StrEnum):
    PAUSE = "pause"
    CONTINUE = "continue"
    ROLLBACK = "rollback"


# A service's rollout, as `ServiceRecord.update_state` names it (swarm mode's
# UpdateStatus.State, spelt as `service inspect` shows it). "" is no rollout yet. A
# rollback, manual (`POST /services/{ref}/rollback`) or the failure action's, is paced
# by `rollback_config` from `rolling back` to `rolled back`; anything else by
# `update_config` from `updating` to `completed`.
UPDATING = "updating"
PAUSED = "paused"
COMPLETED = "completed"
ROLLING_BACK = "rolling back"
ROLLBACK_PAUSED = "rollback paused"
ROLLED_BACK = "rolled back"


class UpdateConfig(Strict):
    parallelism: int = Field(default=1, ge=0)  # 0: all at once
    delay: float = Field(default=0.0, ge=0)
    order: UpdateOrder = UpdateOrder.STOP_FIRST
    failure_action: FailureAction = FailureAction.PAUSE
    monitor: float = Field(default=5.0, ge=0)
    max_failure_ratio: float = Field(default=0.0, ge=0, le=1)


class Placement(Strict):
    constraints: list[str] = Field(default_factory=list)
    preferences: list[str] = Field(default_factory=list)  # label paths to spread over
    max_replicas_per_node: int = Field(default=0, ge=0)
    platforms: list[str] = Field(default_factory=list)  # "linux/amd64"


HEALTH_TEST_KINDS = ("CMD", "CMD-SHELL", "NONE")
MIN_HEALTH_DURATION = 0.001  # Docker refuses intervals, timeouts below 1 ms


class HealthCheck(Strict):
    """A container healthcheck, as Docker runs it; swarm mode's task health follows it.

    `test` is `["CMD", executable, arg...]`, `["CMD-SHELL", "shell command"]`, or
    `["NONE"]` to disable the image's own healthcheck. Durations are seconds; the
    defaults are Docker's.
    """

    test: list[str]
    interval_seconds: float = Field(default=30.0, ge=MIN_HEALTH_DURATION, le=86_400)
    timeout_seconds: float = Field(default=30.0, ge=MIN_HEALTH_DURATION, le=86_400)
    retries: int = Field(default=3, ge=1, le=1_000)
    start_period_seconds: float = Field(default=0.0, ge=0, le=86_400)

    @field_validator("test")
    @classmethod
    def _test(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('must not be empty: ["CMD", ...], ["CMD-SHELL", "..."] or ["NONE"]')
        kind, rest = value[0], value[1:]
        if kind not in HEALTH_TEST_KINDS:
            raise ValueError(f"must start with CMD, CMD-SHELL or NONE, not {kind!r}")
        if kind == "NONE" and rest:
            raise ValueError('["NONE"] takes no arguments')
        if kind == "CMD" and (not rest or not rest[0]):
            raise ValueError('["CMD", ...] needs the executable to run')
        if kind == "CMD-SHELL" and (len(rest) != 1 or not rest[0].strip()):
            raise ValueError('["CMD-SHELL", ...] takes exactly one non-empty shell command')
        return value

    @field_validator("start_period_seconds")
    @classmethod
    def _start_period(cls, value: float) -> float:
        if 0 < value < MIN_HEALTH_DURATION:
            raise ValueError("must be 0 or at least 0.001 (1 ms), as Docker requires")
        return value

    @property
    def disabled(self) -> bool:
        return self.test[0] == "NONE"


class ServiceSpec(Strict):
    """What the user asks for. Stored inside `ServiceRecord` with its version."""

    name: str
    image: str = Field(min_length=1)
    command: list[str] | None = None
    args: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    container_labels: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    mode: ServiceMode = ServiceMode.REPLICATED
    replicas: int = Field(default=1, ge=0, le=100_000)
    ports: list[PortConfig] = Field(default_factory=list)
    limits: ResourceSpec = Field(default_factory=ResourceSpec)
    reservations: ResourceSpec = Field(default_factory=ResourceSpec)
    placement: Placement = Field(default_factory=Placement)
    restart_policy: RestartPolicy = Field(default_factory=RestartPolicy)
    update_config: UpdateConfig = Field(default_factory=UpdateConfig)
    rollback_config: UpdateConfig = Field(default_factory=UpdateConfig)
    stop_signal: str | None = None
    stop_grace_period: float = Field(default=10.0, ge=0)
    init: bool = False
    healthcheck: HealthCheck | None = None  # None: the image's own, if it has one
    stack: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SERVICE_NAME.match(value):
            raise ValueError(
                "must start with a letter or digit and contain only letters, digits, "
                "'_', '.' and '-' (at most 63 characters)"
            )
        return value

    @model_validator(mode="after")
    def _ports_unique(self) -> ServiceSpec:
        seen: set[tuple[str, int]] = set()
        for port in self.ports:
            if port.published is None:
                continue
            key = (port.protocol, port.published)
            if key in seen:
                raise ValueError(f"published port {port.published}/{port.protocol} is used twice")
            seen.add(key)
        return self


class ServiceRecord(Document):
    """`services/<name>`: the spec, its version, and the previous spec for rollback."""

    id: str
    spec: ServiceSpec
    spec_version: int = 1
    previous_spec: ServiceSpec | None = None
    created: float = 0.0
    updated: float = 0.0
    update_state: str = ""  # UPDATING, PAUSED, COMPLETED, ROLLING_BACK, ... or ""
    update_message: str = ""
