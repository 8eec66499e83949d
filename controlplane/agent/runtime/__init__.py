"""Runtimes: what actually runs a task on a node, behind one small seam.

`docker` (the default) runs containers on the local Docker Engine; `process` runs a
task's command as a local process, for hosts without Docker; `hollow` pretends, for
scale tests of the control plane. Each implements `Runtime` from `base`.
"""

from controlplane.agent.runtime.base import (
    LABEL_CLUSTER,
    LABEL_NODE,
    LABEL_SERVICE,
    LABEL_SLOT,
    LABEL_TASK,
    LogLine,
    NodeDescription,
    NotSupported,
    Observed,
    Runtime,
    TaskRejected,
    UnknownTask,
)

__all__ = [
    "LABEL_CLUSTER",
    "LABEL_NODE",
    "LABEL_SERVICE",
    "LABEL_SLOT",
    "LABEL_TASK",
    "LogLine",
    "NodeDescription",
    "NotSupported",
    "Observed",
    "Runtime",
    "TaskRejected",
    "UnknownTask",
]
