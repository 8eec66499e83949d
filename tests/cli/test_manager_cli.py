"""`shoal manager --agent-state-dir`: the manager and this host's node share one id."""

from __future__ import annotations

from pathlib import Path

from controlplane.agent.identity import load_identity
from controlplane.cli.manager import host_node_id
from tests.cli.conftest import shoal


def test_the_host_node_id_is_chosen_once_for_the_agent_to_claim(tmp_path: Path) -> None:
    state_dir = tmp_path / "agent"
    chosen = host_node_id(state_dir)
    saved = load_identity(state_dir)
    assert saved is not None
    assert (saved.node_id, saved.discovery) == (chosen, "")  # not joined yet: the join claims it
    assert host_node_id(state_dir) == chosen  # a restarted manager keeps it


def test_id_and_agent_state_dir_exclude_each_other(tmp_path: Path) -> None:
    result = shoal(
        "manager", "--discovery", f"file://{tmp_path}/store", "--listen", "127.0.0.1:0",
        "--id", "m1", "--agent-state-dir", str(tmp_path / "agent"),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "either --id or --agent-state-dir" in result.output
    assert not (tmp_path / "agent").exists()  # nothing written
