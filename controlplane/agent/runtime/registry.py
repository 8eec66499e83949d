"""Runtime names (`shoal agent --runtime NAME`) to classes, imported only when chosen.

A table of `name -> "module:Class"` like the discovery registry's, so that an agent on
the process or hollow runtime never imports the Docker SDK. The constructors differ
(Docker needs an engine address, the process runtime a state directory, a hollow node
its pretend capacity), so this maps names to classes and the agent calls the one it got.
"""

from __future__ import annotations

import importlib

from controlplane.agent.runtime.base import Runtime

BUILTIN: dict[str, str] = {
    "docker": "controlplane.agent.runtime.docker:DockerRuntime",
    "process": "controlplane.agent.runtime.process:ProcessRuntime",
    "hollow": "controlplane.agent.runtime.hollow:HollowRuntime",
}

DEFAULT = "docker"


class UnknownRuntime(ValueError):
    """No runtime has that name; the message lists those that exist."""


def known_runtimes() -> list[str]:
    return sorted(BUILTIN)


def runtime_class(name: str) -> type[Runtime]:
    """The class behind `name`; raises `UnknownRuntime` naming the known ones."""
    target = BUILTIN.get(name)
    if target is None:
        known = ", ".join(known_runtimes())
        raise UnknownRuntime(f"unknown runtime {name!r}; known runtimes: {known}")
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Runtime)):
        raise TypeError(f"{target} is not a Runtime class")
    return cls
