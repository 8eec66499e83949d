"""The node agent: makes a host a node of the cluster.

It keeps the node's heartbeat key alive on a lease, watches the tasks the leader
assigns under `tasks/<node-id>/`, makes a runtime (Docker, local processes, or a hollow
stand-in) do what they say, and reports what really happens under `status/<task-id>`.
It talks to the store, never to a manager, except once at join.
"""
