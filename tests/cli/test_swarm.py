"""`shoal swarm`: init saves what later commands need, join tokens, leave, info."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from controlplane.agent.identity import Identity, node_file, save_identity
from controlplane.cli.client import resolve_target
from controlplane.cli.config import Config, load_config, save_config
from tests.cli.conftest import ServedManager, shoal


def join(url: str, token: str) -> int:
    body = {"token": token, "hostname": "h", "addr": "10.0.0.9"}
    return httpx.post(f"{url}/swarm/join", json=body).status_code


def test_init_saves_host_and_token_privately_and_prints_a_working_join_command(
    served: ServedManager, user_env: Path
) -> None:
    result = shoal("swarm", "init", "--host", served.url, "--advertise-addr", "10.1.2.3")
    assert result.exit_code == 0, result.output
    config = load_config()
    assert config.host == served.url
    assert (config.token or "").startswith("SHOAL-1-")
    assert stat.S_IMODE(user_env.stat().st_mode) == 0o600
    assert stat.S_IMODE(user_env.parent.stat().st_mode) == 0o700
    port = served.url.rsplit(":", 1)[1]
    command = next(line.strip() for line in result.stdout.splitlines() if "swarm join" in line)
    assert command == f"shoal swarm join --token {config.join_tokens['worker']} 10.1.2.3:{port}"
    assert join(served.url, config.join_tokens["worker"]) == 200
    # and the saved token is used from now on, with no flag and no variable
    assert shoal("node", "ls").exit_code == 0


def test_init_on_loopback_warns_that_other_hosts_cannot_join(served: ServedManager) -> None:
    result = shoal("swarm", "init", "--host", served.url)
    assert "is a loopback address: other hosts cannot reach it" in result.stderr


def test_init_twice_says_the_cluster_exists(cluster: ServedManager) -> None:
    result = shoal("swarm", "init")
    assert result.exit_code == 1
    assert "is already initialised" in result.stderr
    assert "shoal swarm join-token worker" in result.stderr


def test_the_saved_token_goes_only_to_its_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    save_config(Config(host="http://10.0.0.1:2377", token="SHOAL-1-x-saved"))
    assert resolve_target(None).token == "SHOAL-1-x-saved"
    assert resolve_target("10.0.0.1:2377").token == "SHOAL-1-x-saved"
    assert resolve_target("http://10.9.9.9:2377").token is None  # another cluster
    monkeypatch.setenv("SHOAL_TOKEN", "SHOAL-1-x-env")
    target = resolve_target("http://10.9.9.9:2377")
    assert (target.token, target.token_source) == ("SHOAL-1-x-env", "SHOAL_TOKEN")


def test_config_keeps_keys_it_does_not_know(user_env: Path) -> None:
    user_env.parent.mkdir(parents=True)
    user_env.write_text(json.dumps({"host": "http://h:1", "editor": "vi"}))
    config = load_config()
    config.token = "t"
    save_config(config)
    assert json.loads(user_env.read_text()) == {"editor": "vi", "host": "http://h:1", "token": "t"}


def test_a_broken_config_file_is_named(user_env: Path) -> None:
    user_env.parent.mkdir(parents=True)
    user_env.write_text("{not json")
    result = shoal("node", "ls")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"shoal: {user_env} is not valid JSON")


def test_join_token_shows_the_saved_one_and_rotate_replaces_it(cluster: ServedManager) -> None:
    old = load_config().join_tokens["worker"]
    shown = shoal("swarm", "join-token", "worker")
    assert shown.exit_code == 0
    assert f"shoal swarm join --token {old} 127.0.0.1:" in shown.stdout
    assert shoal("swarm", "join-token", "-q", "worker").stdout == f"{old}\n"
    rotated = shoal("swarm", "join-token", "--rotate", "-q", "worker")
    assert rotated.exit_code == 0
    new = rotated.stdout.strip()
    assert new != old
    assert load_config().join_tokens["worker"] == new
    assert join(cluster.url, old) == 401
    assert join(cluster.url, new) == 200


def test_join_token_without_a_saved_one_says_how_to_get_one(cluster: ServedManager) -> None:
    config = load_config()
    config.join_tokens = {}
    save_config(config)
    result = shoal("swarm", "join-token", "manager")
    assert result.exit_code == 1
    assert "shoal swarm join-token --rotate manager" in result.stderr


def test_info(cluster: ServedManager) -> None:
    cluster.seed_node("n1", hostname="one")
    cluster.seed_node("n2", hostname="two", up=False)
    text = shoal("swarm", "info").stdout
    assert "Nodes:      2 (1 ready, 1 down)" in text
    assert "(m-test, not the leader," in text
    info = json.loads(shoal("swarm", "info", "--format", "json").stdout)
    assert info["nodes"] == {"ready": 1, "down": 1}
    assert info["manager"]["manager_id"] == "m-test"


@pytest.fixture
def this_node(tmp_path: Path) -> str:
    save_identity(tmp_path / "agent", Identity(node_id="local1", cluster_id="c", discovery="x"))
    return "local1"


def test_leave_removes_the_node_and_forgets_the_identity(
    cluster: ServedManager, this_node: str, tmp_path: Path
) -> None:
    cluster.seed_node(this_node, hostname="here", up=False)  # its agent was stopped
    result = shoal("swarm", "leave")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Node local1 left the cluster.\n"
    assert not node_file(tmp_path / "agent").exists()
    assert this_node not in shoal("node", "ls", "-q").stdout


def test_leave_while_the_agent_runs_needs_force(
    cluster: ServedManager, this_node: str, tmp_path: Path
) -> None:
    cluster.seed_node(this_node, hostname="here", up=True)
    refused = shoal("swarm", "leave")
    assert refused.exit_code == 1
    assert refused.stderr == (
        "shoal: node local1 is still up: stop its agent first, or leave anyway with --force\n"
    )
    assert node_file(tmp_path / "agent").exists()
    assert shoal("swarm", "leave", "--force").exit_code == 0
    assert this_node not in shoal("node", "ls", "-q").stdout


def test_leave_without_a_cluster() -> None:
    result = shoal("swarm", "leave")
    assert result.exit_code == 1
    assert "this host is not in a cluster (no node identity in" in result.stderr
