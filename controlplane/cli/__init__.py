"""The `shoal` command line: docker's verbs (swarm, node, service, stack) for shoal.

`app.py` assembles the command tree; each command group lives in its own module.
Exit codes: 0 ok, 1 the operation failed, 2 a usage error.
"""

from controlplane.cli.app import main

__all__ = ["main"]
