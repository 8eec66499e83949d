"""The Docker Engine API, served by a manager for the whole cluster (`--docker-api`).

Classic Swarm's promise: point the `docker` CLI (or any Engine API client) at a manager
and it drives the cluster. This package is a second ASGI app, served by the manager
process on its own listener, that speaks a subset of the Engine API v1.41: `_ping`,
`version`, `info`, `events`, containers (list, create, start, stop, kill, restart,
wait, inspect, logs, remove) and `images/json`. Anything else answers 501 in Docker's
error shape, `{"message": "... is not supported by shoal"}`, which the CLI prints.

A container created here is a service of one replica with restart condition `none`,
labelled `com.shoal.docker-api=container` (`containers.ONE_OFF_LABEL`): it lives in
the store like every service, the leader schedules it through the normal pipeline (the
classic `-e constraint:...` / `-e affinity:...` and the `com.docker.swarm.constraints`
label become its placement constraints), and any manager answers for it. Its Docker id
is the service's id. Calls that need the node (logs, inspect, kill, stop, images) go to
the node's agent endpoint. Every manager answers every call: desired state is written
to the store directly, so nothing needs forwarding to the leader.

    app          the ASGI app: version prefixes, Docker error shape, the unsupported rest
    errors       DockerError and the handlers that give `{"message": ...}`
    system       /_ping, /version, /info, /events
    containers   the container routes
    oneoff       a Docker create body as a shoal service spec
    listing      tasks as Docker container summaries and inspects; resolving a reference
    frames       the multiplexed stdout/stderr stream framing of `logs`
    images       /images/json over every node; pulls are not supported
"""
