"""The agent's own HTTP endpoint: what a manager needs a node for.

Logs, inspecting a task's container, signalling or stopping it, and the node's images
can only be had on the node, so every (non-hollow) agent serves a small HTTP API on its
advertise address (`--api-port`, 0 by default: any free port). Its URL and a random
bearer secret, new for each agent process, go into the node's heartbeat record
(`nodes/<id>`: `agent_api`, `agent_secret`). Whoever can read the store can therefore
call every agent: the store is the cluster's trust root, as it already is for task
specs. The REST API never shows the secret.

`app` builds the ASGI app, `server` binds and serves it, `client` is what managers use.
A process hosting a hollow fleet serves none: hollow nodes have no logs to show.
"""
