"""Bodies of `/services`. A service is created from a `ServiceSpec` as it is stored."""

from __future__ import annotations

from pydantic import BaseModel, Field

from controlplane.api.control.services import ServiceState
from controlplane.api.schemas.common import Request
from controlplane.models import ServiceSpec


class ScaleRequest(Request):
    replicas: int = Field(ge=0, le=100_000)


class Created(BaseModel):
    id: str
    name: str
    spec_version: int


class Replicas(BaseModel):
    desired: int
    running: int


class ServiceView(BaseModel):
    id: str
    name: str
    spec: ServiceSpec
    spec_version: int
    previous_spec: ServiceSpec | None
    created: float
    updated: float
    update_state: str
    update_message: str
    replicas: Replicas

    @classmethod
    def of(cls, state: ServiceState) -> ServiceView:
        record = state.record
        return cls(
            id=record.id,
            name=record.spec.name,
            spec=record.spec,
            spec_version=record.spec_version,
            previous_spec=record.previous_spec,
            created=record.created,
            updated=record.updated,
            update_state=record.update_state,
            update_message=record.update_message,
            replicas=Replicas(desired=state.desired, running=state.running),
        )
