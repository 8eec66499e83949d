"""Building a node's runtime from the agent's options, once the node's identity is known.

The runtimes' constructors differ (Docker needs an engine address, a hollow node its
pretend capacity), and each needs the node and cluster ids to label its work, which are
known only after the identity is resolved. `runtime_factory` turns the command line's
options into the `RuntimeFactory` that `Agent` calls at that moment. Each runtime's
module is imported only when chosen, so a hollow or process agent never loads Docker's SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controlplane.agent.agent import RuntimeFactory
from controlplane.agent.identity import Identity
from controlplane.agent.runtime import Runtime
from controlplane.agent.runtime.registry import UnknownRuntime, known_runtimes

#: A hollow node's capacity unless told otherwise: a modest server.
DEFAULT_HOLLOW_CPUS = 4.0
DEFAULT_HOLLOW_MEMORY = 8 * 1024**3


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    name: str
    advertise_addr: str
    state_dir: Path
    docker_host: str | None = None
    hollow_cpus: float = DEFAULT_HOLLOW_CPUS
    hollow_memory: int = DEFAULT_HOLLOW_MEMORY
    hostname: str | None = None  # a hollow node's pretend hostname


def check_runtime_name(name: str) -> None:
    """Raise `UnknownRuntime` (naming the known ones) unless `name` is a runtime."""
    if name not in known_runtimes():
        raise UnknownRuntime(
            f"unknown runtime {name!r}; known runtimes: {', '.join(known_runtimes())}"
        )


def runtime_factory(options: RuntimeOptions) -> RuntimeFactory:
    """A factory building the runtime `options.name` for an identity."""
    check_runtime_name(options.name)

    def build(identity: Identity) -> Runtime:
        if options.name == "hollow":
            from controlplane.agent.runtime.hollow import HollowRuntime

            return HollowRuntime(
                node_id=identity.node_id,
                cluster_id=identity.cluster_id,
                nano_cpus=int(options.hollow_cpus * 1e9),
                memory_bytes=options.hollow_memory,
                hostname=options.hostname,
                advertise_addr=options.advertise_addr,
            )
        if options.name == "docker":
            from controlplane.agent.runtime.docker import DockerRuntime

            return DockerRuntime(
                cluster_id=identity.cluster_id,
                node_id=identity.node_id,
                advertise_addr=options.advertise_addr,
                docker_host=options.docker_host,
            )
        if options.name == "process":
            from controlplane.agent.runtime.process import ProcessRuntime

            return ProcessRuntime(
                cluster_id=identity.cluster_id,
                node_id=identity.node_id,
                state_dir=options.state_dir,
                advertise_addr=options.advertise_addr,
            )
        raise UnknownRuntime(f"the {options.name} runtime cannot be built by this agent")

    return build
