"""Bodies of `/tasks`: a task as assigned, with its last reported status."""

from __future__ import annotations

from pydantic import BaseModel

from controlplane.api.control.tasks import ObservedTask
from controlplane.models import Endpoint, TaskState
from controlplane.models.task import DesiredState


class TaskView(BaseModel):
    id: str
    service: str
    service_id: str
    slot: int | None
    node_id: str
    image: str
    spec_version: int
    desired_state: DesiredState
    state: TaskState
    message: str
    error: str
    container_id: str
    exit_code: int | None
    endpoints: list[Endpoint]
    created: float
    updated: float | None

    @classmethod
    def of(cls, item: ObservedTask) -> TaskView:
        task, status = item.task, item.status
        return cls(
            id=task.id,
            service=task.service,
            service_id=task.service_id,
            slot=task.slot,
            node_id=task.node_id,
            image=task.spec.image,
            spec_version=task.spec_version,
            desired_state=task.desired_state,
            state=item.state,
            message=status.message if status else "",
            error=status.error if status else "",
            container_id=status.container_id if status else "",
            exit_code=status.exit_code if status else None,
            endpoints=list(status.endpoints) if status else [],
            created=task.created,
            updated=status.timestamp if status else None,
        )
