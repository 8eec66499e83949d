"""Bodies of `/stacks`: a deploy (a compose document or the converted specs) and answers."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, model_validator

from controlplane.api.control.stacks import Deployed, StackSummary
from controlplane.api.schemas.common import Request
from controlplane.models import ServiceSpec

STACK_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$"
#: Largest compose document taken, in characters (the body limit applies too).
MAX_COMPOSE = 1024 * 1024


class StackDeploy(Request):
    """Exactly one of `compose` and `services`.

    - `compose`: a compose document as YAML text. The manager converts it as `shoal
      stack deploy` does on the client; `${VAR}` reads `environment` only (never the
      manager's own environment), and an `env_file` is refused (it is on the client).
    - `services`: the service specs already converted, each named `<stack>_<service>`
      (`stack` left out or equal to the stack's name).

    With `prune`, the stack's services that the deploy does not name are removed, in
    the same transaction.
    """

    name: str = Field(pattern=STACK_NAME_PATTERN, description="The stack's name")
    compose: str | None = Field(default=None, max_length=MAX_COMPOSE)
    environment: dict[str, str] = Field(
        default_factory=dict, description="Variables `${VAR}` in `compose` may read"
    )
    services: list[ServiceSpec] | None = None
    prune: bool = Field(default=False, description="Remove the stack's services not named")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.compose is None) == (self.services is None):
            raise ValueError("give exactly one of `compose` (YAML text) and `services`")
        return self


class StackDeployed(BaseModel):
    name: str
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    removed: list[str]
    warnings: list[str] = Field(description="What the compose conversion warned about")

    @classmethod
    def of(cls, name: str, deployed: Deployed, *, warnings: list[str]) -> StackDeployed:
        return cls(
            name=name,
            created=deployed.created,
            updated=deployed.updated,
            unchanged=deployed.unchanged,
            removed=deployed.removed,
            warnings=warnings,
        )


class StackView(BaseModel):
    name: str
    services: int

    @classmethod
    def of(cls, summary: StackSummary) -> StackView:
        return cls(name=summary.name, services=summary.services)


class StackRemoved(BaseModel):
    name: str
    removed: list[str]
