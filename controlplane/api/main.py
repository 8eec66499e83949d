"""Builds the manager's FastAPI app, and does nothing else.

The app is a pure function of an `ApiContext`: no lifespan, no background work. The
manager process (`controlplane.manager`) owns the store, the mirror and the leader loop
and hands them in; tests hand in a memory store and drive the app in-process.
"""

from __future__ import annotations

from fastapi import FastAPI

from controlplane.api import errors
from controlplane.api.context import ApiContext
from controlplane.api.limits import BodyLimit
from controlplane.api.routes import (
    events,
    health,
    logs,
    metrics,
    nodes,
    services,
    stacks,
    swarm,
    tasks,
)
from controlplane.version import __version__

DESCRIPTION = """\
The REST API of a shoal manager. Any manager answers any call: reads come from its
view of the cluster, writes of desired state go to the store, and the leader turns them
into tasks. Every call but `/health`, `/swarm/join` and the first `/swarm/init` needs
the API token printed by `swarm init`, as `Authorization: Bearer SHOAL-1-...`.
"""


#: Every router, in the order the OpenAPI document lists them.
ROUTERS = (
    health.router,
    swarm.router,
    nodes.router,
    services.router,
    stacks.router,
    tasks.router,
    logs.router,
    events.router,
    metrics.router,
)


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(title="shoal manager", version=__version__, description=DESCRIPTION)
    app.state.context = context
    context.metrics.track(context.view, context.is_leader)
    errors.install(app)
    app.add_middleware(BodyLimit)
    for router in ROUTERS:
        app.include_router(router)
    return app
