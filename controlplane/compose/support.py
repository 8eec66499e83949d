"""What a stack deploy does with each compose key: use it, ignore it (warning), or refuse it.

Compose files are shared between `docker compose` on a laptop and stacks on a cluster,
so a key that only makes sense on one machine (`build`, `restart`, `links`) must not stop
a deploy: swarm mode ignores it, and so do we, but we say so, naming the key and what
stands in for it. A key whose effect swarm mode provides another way (`mem_limit` versus
`deploy.resources`) is refused, because ignoring it would silently drop a limit the
author meant to set.

A third group is what swarm mode supports and shoal does not do yet (volumes, networks,
secrets, ...): a warning that says what the service will lack, so nobody discovers it
in production.
"""

from __future__ import annotations

#: Service keys the converter reads.
SUPPORTED = frozenset(
    {
        "image",
        "command",
        "entrypoint",
        "environment",
        "env_file",
        "ports",
        "labels",
        "working_dir",
        "user",
        "stop_grace_period",
        "stop_signal",
        "init",
        "healthcheck",
        "deploy",
    }
)

#: Service keys swarm mode ignores: a warning saying why, and what to do instead.
IGNORED = {
    "build": "swarm mode does not build images; build and push the image, then set `image`",
    "cgroup_parent": "swarm mode ignores it",
    "cgroupns_mode": "swarm mode ignores it",
    "container_name": "swarm mode names containers itself (<stack>_<service>.<slot>.<task>)",
    "depends_on": "swarm mode starts services in no particular order; make them retry",
    "devices": "swarm mode ignores it",
    "domainname": "swarm mode ignores it",
    "external_links": "swarm mode ignores it",
    "ipc": "swarm mode ignores it",
    "links": "swarm mode ignores it",
    "mac_address": "swarm mode ignores it",
    "network_mode": "swarm mode ignores it",
    "pid": "swarm mode ignores it",
    "privileged": "swarm mode does not run privileged containers",
    "profiles": "a stack deploys every service",
    "pull_policy": "nodes pull the image when they do not have it",
    "restart": "use deploy.restart_policy",
    "security_opt": "swarm mode ignores it",
    "shm_size": "swarm mode ignores it",
    "userns_mode": "swarm mode ignores it",
}

#: Service keys refused: the error says what to write instead.
REJECTED = {
    "extends": "not supported in a stack; merge files with several -c options instead",
    "volumes_from": "not supported in a stack; use named volumes",
    "scale": "use deploy.replicas",
    "cpus": "use deploy.resources.limits.cpus",
    "cpu_count": "use deploy.resources.limits.cpus",
    "cpu_percent": "use deploy.resources.limits.cpus",
    "cpu_period": "use deploy.resources.limits.cpus",
    "cpu_quota": "use deploy.resources.limits.cpus",
    "cpu_rt_period": "not supported in a stack",
    "cpu_rt_runtime": "not supported in a stack",
    "cpu_shares": "use deploy.resources.reservations.cpus",
    "cpuset": "not supported in a stack",
    "mem_limit": "use deploy.resources.limits.memory",
    "mem_reservation": "use deploy.resources.reservations.memory",
    "memswap_limit": "not supported in a stack",
    "pids_limit": "not supported by shoal yet",
}

#: Service keys swarm mode supports and shoal does not yet: what the service will lack.
NOT_YET = {
    "volumes": "shoal does not mount volumes yet: tasks get no mounts, and data written "
    "in the container is lost when a task is replaced",
    "tmpfs": "shoal does not mount volumes yet",
    "networks": "shoal has no overlay networks yet: tasks reach each other through "
    "published ports, not by service name",
    "secrets": "shoal does not distribute secrets yet: tasks get no secret files",
    "configs": "shoal does not distribute configs yet: tasks get no config files",
    "hostname": "shoal does not set container hostnames yet",
    "dns": "shoal does not set DNS options yet",
    "dns_opt": "shoal does not set DNS options yet",
    "dns_search": "shoal does not set DNS options yet",
    "extra_hosts": "shoal does not add /etc/hosts entries yet",
    "cap_add": "shoal does not change capabilities yet",
    "cap_drop": "shoal does not change capabilities yet",
    "logging": "containers use the node's default log driver",
    "sysctls": "shoal does not set sysctls yet",
    "ulimits": "shoal does not set ulimits yet",
    "read_only": "shoal does not make root filesystems read-only yet",
    "tty": "shoal does not allocate a TTY",
    "stdin_open": "shoal does not keep stdin open",
    "expose": "without networks, only published ports are reachable",
    "group_add": "shoal does not add groups yet",
    "isolation": "shoal does not set isolation",
    "platform": "use deploy.placement.constraints with node.platform.os / node.platform.arch",
    "credential_spec": "shoal does not set credential specs",
}

#: `deploy` keys shoal does not act on yet.
DEPLOY_NOT_YET = {
    "endpoint_mode": "shoal has no service virtual IPs; tasks are reached through published ports",
}

#: Top-level keys: "" means silently accepted; otherwise a warning.
TOP_LEVEL = {
    "version": "",
    "name": "",
    "services": "",
    "networks": "shoal has no overlay networks yet; ignored",
    "volumes": "shoal does not mount volumes yet; ignored",
    "secrets": "shoal does not distribute secrets yet; ignored",
    "configs": "shoal does not distribute configs yet; ignored",
}

#: Top-level keys refused.
TOP_LEVEL_REJECTED = {
    "include": "not supported in a stack; merge files with several -c options instead",
}
