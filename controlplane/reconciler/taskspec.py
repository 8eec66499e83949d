"""The task spec a service spec gives: what a runtime needs to run one of its tasks.

A task carries a copy of it, and a task is *current* when its copy equals the one the
service's spec gives now. That comparison, not the spec version, is what a rolling
update replaces: a rollback restores an older spec, and the tasks that already run it
are left alone. Placement, replicas and policies are not part of it; changing only
them moves no task.
"""

from __future__ import annotations

from controlplane.models import ServiceSpec, TaskSpec


def task_spec_for(spec: ServiceSpec) -> TaskSpec:
    return TaskSpec(
        image=spec.image,
        command=spec.command,
        args=spec.args,
        env=dict(spec.env),
        labels=dict(spec.container_labels),
        workdir=spec.workdir,
        user=spec.user,
        ports=list(spec.ports),
        nano_cpus_limit=spec.limits.nano_cpus,
        memory_limit_bytes=spec.limits.memory_bytes,
        stop_signal=spec.stop_signal,
        stop_grace_seconds=spec.stop_grace_period,
        init=spec.init,
        healthcheck=spec.healthcheck,
    )
