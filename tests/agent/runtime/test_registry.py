"""`--runtime NAME` resolves to a class; a typo is told which names exist."""

from __future__ import annotations

import pytest

from controlplane.agent.runtime.docker import DockerRuntime
from controlplane.agent.runtime.hollow import HollowRuntime
from controlplane.agent.runtime.process import ProcessRuntime
from controlplane.agent.runtime.registry import UnknownRuntime, known_runtimes, runtime_class


def test_each_name_resolves_to_its_runtime() -> None:
    assert runtime_class("docker") is DockerRuntime
    assert runtime_class("process") is ProcessRuntime
    assert runtime_class("hollow") is HollowRuntime
    assert known_runtimes() == ["docker", "hollow", "process"]


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownRuntime, match="known runtimes: docker, hollow, process"):
        runtime_class("dokcer")
