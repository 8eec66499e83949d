"""Shell completion of service, node and stack names, asked from the manager."""

from __future__ import annotations

from typer.testing import CliRunner

from controlplane.cli.app import app
from tests.cli.conftest import ServedManager, shoal
from tests.harness.process import free_port


def complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash would offer after `words` (the last word is the one being completed)."""
    cword = len(words.split(" ")) - 1
    variables = {"_SHOAL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    result = CliRunner().invoke(app, [], prog_name="shoal", env={**variables, **(env or {})})
    assert result.exit_code == 0, result.output
    return result.stdout.split()


def test_names_come_from_the_manager(cluster: ServedManager) -> None:
    for name in ("web", "worker", "db"):
        assert shoal("service", "create", "-d", "--name", name, "busybox").exit_code == 0
    deployed = shoal(
        "stack", "deploy", "-d", "-c", "-", "shop", stdin="services:\n  a:\n    image: x\n"
    )
    assert deployed.exit_code == 0
    cluster.seed_node("n1aaaa", hostname="alpha")
    assert complete("shoal service ps w") == ["web", "worker"]
    assert complete("shoal service scale d") == ["db="]
    assert complete("shoal node update a") == ["alpha"]
    assert complete("shoal stack rm ") == ["shop"]


def test_nothing_is_offered_when_the_manager_is_away() -> None:
    assert complete("shoal service rm ", env={"SHOAL_HOST": f"127.0.0.1:{free_port()}"}) == []
