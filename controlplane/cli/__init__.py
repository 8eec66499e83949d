"""The `shoal` command line: docker's verbs (swarm, node, service, stack) for shoal.

`app.py` assembles the command tree; each command group lives in its own module.
Exit codes: 0 ok, 1 the operation failed, 2 a usage error.
"""


def main() -> None:
    """The `shoal` console script (the command tree is imported when it runs, so that
    importing one module of this package does not import them all)."""
    from controlplane.cli.app import main as run

    run()
