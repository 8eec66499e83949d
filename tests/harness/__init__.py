"""Real servers for the test suite: etcd, Consul and dockerd started on loopback.

Each server is a `ServerProcess` with its own data directory and ports, started by a
pytest fixture and stopped after it. The binaries come from `scripts/install-deps`.
When a binary is missing, tests that need it are skipped with a message saying how to
install it, except under `CI=true`, where a missing server fails the run.

Developers can also run one by hand: `python -m tests.harness etcd` (see __main__).
"""
