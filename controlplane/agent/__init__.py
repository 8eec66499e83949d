"""The node agent: makes a host a node of the cluster.

It keeps the node's heartbeat key alive on a lease, watches the tasks the leader
assigns under `tasks/<node-id>/`, makes a runtime (Docker, local processes, or a hollow
stand-in) do what they say, and reports what really happens under `status/<task-id>`.
It talks to the store, never to a manager, except once at join.

Where things are:
- `agent`: `Agent`, one node composed of the parts below (`run()`, `stop()`);
- `identity`: the node id, cluster id and store URL kept in `<state-dir>/node.json`;
- `join`: the one call to a manager (`POST /swarm/join`);
- `heartbeat`: registration (refusing a node id another live agent holds) and the lease;
- `executor`: tasks to runtime actions, runtime changes to statuses, periodic re-listing;
- `status`: writing statuses, keeping the latest per task while the store is away;
- `fleet` and `shared_watch`: hollow mode, many nodes in one process;
- `runtime_factory`: the command line's runtime options to a runtime, once the node is known;
- `runtime/`: the runtimes themselves, behind one seam (`runtime.base.Runtime`).
"""
