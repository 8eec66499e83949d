"""Registration and heartbeat, in-process on the memory store with a fake runtime.

What operators rely on: a node appears with its address and capacity and disappears the
moment its agent stops; a restarted agent comes back as the same node; two agents never
share a node id; a lost lease or a store outage never takes a node out for good.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from controlplane import keys
from controlplane.agent.heartbeat import NodeIdConflict
from controlplane.agent.identity import load_identity
from controlplane.agent.runtime import NodeDescription
from controlplane.models import NodeInfo, NodeSpec
from tests.agent.conftest import AgentRunner, FakeRuntime, FlakyStore, eventually


async def node_info(agent_store: FlakyStore, node_id: str) -> NodeInfo | None:
    kv = await agent_store.inner.get(keys.node(node_id))
    return NodeInfo.load(kv.value) if kv is not None else None


async def test_node_registers_and_vanishes_at_once_on_stop(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime, tmp_path: Path
) -> None:
    agent = await agents.start(agents.agent(fake_runtime, labels={"zone": "a"}))
    info = await node_info(agent_store, agent.node_id)
    assert info is not None
    assert (info.addr, info.hostname, info.runtime) == ("127.0.0.2", "fake-host", "fake")
    assert info.nano_cpus == 2_000_000_000
    assert info.engine_labels == {"fake": "yes"}
    assert info.instance == agent.instance
    kv = await agent_store.get(keys.node_spec(agent.node_id))
    assert kv is not None
    assert NodeSpec.load(kv.value).labels == {"zone": "a"}
    saved = load_identity(tmp_path / "agent")
    assert saved is not None
    assert (saved.node_id, saved.cluster_id) == (agent.node_id, "cluster-test")
    assert stat.S_IMODE((tmp_path / "agent" / "node.json").stat().st_mode) == 0o600

    await agents.stop(agent)
    assert await agent_store.get(keys.node(agent.node_id)) is None  # at once, not after the TTL
    assert await agent_store.get(keys.node_spec(agent.node_id)) is not None  # durable


async def test_restart_keeps_node_id_and_operator_labels(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    first = await agents.start(agents.agent(fake_runtime, labels={"zone": "a"}))
    await agents.stop(first)
    second = await agents.start(agents.agent(fake_runtime, labels={"zone": "b"}))
    assert second.node_id == first.node_id
    kv = await agent_store.get(keys.node_spec(second.node_id))
    assert kv is not None
    assert NodeSpec.load(kv.value).labels == {"zone": "a"}  # set at creation only


async def test_copied_state_dir_is_refused_naming_the_other_agent(
    agents: AgentRunner, tmp_path: Path
) -> None:
    first = await agents.start(agents.agent(FakeRuntime(), addr="127.0.0.2"))
    copy = tmp_path / "copied"
    shutil.copytree(tmp_path / "agent", copy)
    second = agents.agent(FakeRuntime(), state_dir=copy, addr="127.0.0.3")
    with pytest.raises(NodeIdConflict) as caught:
        await second.start()
    message = str(caught.value)
    assert first.node_id in message
    assert "fake-host" in message
    assert "127.0.0.2" in message
    assert "started 20" in message
    assert "copied from another host" in message
    assert f"Remove {copy / 'node.json'}" in message


async def test_previous_incarnation_is_waited_out(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    killed = agents.agent(fake_runtime)
    await killed.start()  # registered, then never renewed: as if killed with SIGKILL
    node_id = killed.node_id
    restarted = await agents.start(agents.agent(fake_runtime))
    assert restarted.node_id == node_id
    info = await node_info(agent_store, node_id)
    assert info is not None
    assert info.instance == restarted.instance


async def test_lost_lease_registers_again_under_the_same_id(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    agent = await agents.start(agents.agent(fake_runtime))
    assert agent.heartbeat is not None
    old_lease = agent.heartbeat.lease
    assert old_lease is not None
    await agent_store.inner.revoke(old_lease)
    assert await node_info(agent_store, agent.node_id) is None

    async def back() -> bool:
        info = await node_info(agent_store, agent.node_id)
        return (
            info is not None and agent.heartbeat is not None and agent.heartbeat.lease != old_lease
        )

    await eventually(back, within=3.0, what="re-registration")


async def test_store_outage_longer_than_ttl_is_survived(
    agent_store: FlakyStore, agents: AgentRunner, fake_runtime: FakeRuntime
) -> None:
    agent = await agents.start(agents.agent(fake_runtime, period=0.2))  # TTL 0.6 s
    agent_store.go_down()

    async def expired() -> bool:
        return await node_info(agent_store, agent.node_id) is None

    await eventually(expired, within=3.0, what="the node key expiring while the store is down")
    agent_store.come_back()

    async def registered() -> bool:
        heartbeat = agent.heartbeat
        return heartbeat is not None and heartbeat.registrations == 2

    await eventually(registered, within=5.0, what="re-registration after the outage")
    assert await node_info(agent_store, agent.node_id) is not None


class LateRuntime(FakeRuntime):
    """A runtime whose engine answers only from its third call on (started after us)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def describe(self) -> NodeDescription:
        self.calls += 1
        if self.calls < 3:
            raise ConnectionError("engine not up yet (test)")
        return await super().describe()


async def test_an_engine_that_starts_after_the_agent_is_waited_for(
    agent_store: FlakyStore, agents: AgentRunner
) -> None:
    runtime = LateRuntime()
    agent = await agents.start(agents.agent(runtime))
    assert runtime.calls == 3
    assert await node_info(agent_store, agent.node_id) is not None
