"""The registry, including a real third-party distribution found by importlib.metadata."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from scheduler_helpers import node, replicas

from scheduler import (
    DEFAULT_FILTERS,
    RegistryError,
    filter_names,
    load_filters,
    load_pipeline,
    load_strategy,
    strategy_names,
)

PLUGIN = '''
"""A third-party filter: only nodes whose engine reports a GPU."""

from collections.abc import Hashable


class GpuFilter:
    name = "gpu"
    dynamic = False

    def check(self, request, node):
        return node.engine_labels.get("gpu") == "true"

    def cache_key(self, request) -> Hashable:
        return ()

    def explain(self, request, count):
        return f"{count} node{'s' if count != 1 else ''} without a GPU"


class LastFirst:
    """A strategy: the largest node id first."""

    name = "last-first"

    def __init__(self, *, seed=None):
        self.seed = seed

    def key(self, request, node):
        return tuple(-ord(ch) for ch in node.id)

    def rank(self, request, nodes):
        return sorted(nodes, key=lambda n: self.key(request, n))
'''


def install(root: Path, *, dist: str, module: str, source: str, entry_points: str) -> None:
    """Write `module.py` and a `dist-1.0.dist-info/` the way pip would leave them."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def gpu_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    install(
        tmp_path,
        dist="shoal_gpu",
        module="shoal_gpu_filter",
        source=PLUGIN,
        entry_points="""
            [shoal.filters]
            gpu = shoal_gpu_filter:GpuFilter

            [shoal.strategies]
            last-first = shoal_gpu_filter:LastFirst
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_default_filters_start_with_ready() -> None:
    assert [f.name for f in load_filters()] == list(DEFAULT_FILTERS)
    assert DEFAULT_FILTERS[0] == "ready"


def test_ready_is_always_first() -> None:
    assert [f.name for f in load_filters(["resources", "ready"])] == ["ready", "resources"]
    assert [f.name for f in load_filters(["constraint"])] == ["ready", "constraint"]


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(RegistryError, match="unknown filter 'nope'; known: affinity, constraint"):
        load_filters(["nope"])
    with pytest.raises(RegistryError, match="known: binpack, random, spread"):
        load_strategy("nope")


def test_a_filter_listed_twice_is_an_error() -> None:
    with pytest.raises(RegistryError, match="listed twice: resources"):
        load_filters(["resources", "resources"])


def test_builtin_names() -> None:
    assert set(DEFAULT_FILTERS) <= set(filter_names())
    assert {"spread", "binpack", "random"} <= set(strategy_names())


@pytest.mark.usefixtures("gpu_plugin")
def test_third_party_filter_from_an_entry_point_is_loaded_and_used() -> None:
    assert "gpu" in filter_names()
    pipeline = load_pipeline(filters=[*DEFAULT_FILTERS, "gpu"])
    assert [f.name for f in pipeline.filters][-1] == "gpu"
    views = [node("a"), node("b", engine_labels={"gpu": "true"}), node("c")]
    result = pipeline.place(replicas("train", 2), views)
    assert result.assignments == {"train.1": "b", "train.2": "b"}

    [(_, why)] = pipeline.place(replicas("train", 1), [node("a"), node("c")]).unplaced
    assert why == "2 nodes without a GPU"


@pytest.mark.usefixtures("gpu_plugin")
def test_third_party_strategy_from_an_entry_point() -> None:
    pipeline = load_pipeline(strategy="last-first", seed=4)
    assert pipeline.strategy.name == "last-first"
    result = pipeline.place(replicas("web", 2), [node("a"), node("c"), node("b")])
    assert result.assignments == {"web.1": "c", "web.2": "c"}


def test_an_entry_point_shadowing_a_builtin_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(
        tmp_path,
        dist="shoal_evil",
        module="shoal_evil_filter",
        source=PLUGIN,
        entry_points="""
            [shoal.filters]
            resources = shoal_evil_filter:GpuFilter
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError, match="'resources' is registered twice"):
        load_filters()


def test_a_broken_entry_point_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        tmp_path,
        dist="shoal_broken",
        module="shoal_broken_filter",
        source="",
        entry_points="""
            [shoal.filters]
            broken = shoal_broken_filter:Missing
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RegistryError, match="cannot load entry point"):
        load_filters(["broken"])
    load_filters()  # the others still load
